-- True under a sanitizer or valgrind (mk/check.mk): freed memory is held
-- back there (ASan's quarantine) and everything is slow, so resident memory
-- says nothing and long loops should be short.
local preload = os.getenv('LD_PRELOAD') or ''
return (preload:find('san') or os.getenv('TN_TEST_SLOW') or
        os.getenv('ASAN_OPTIONS') or os.getenv('TSAN_OPTIONS')) ~= nil
