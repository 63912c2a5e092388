# mk/check.mk - the reliability suites, included by the top Makefile.
#
#   make check-asan       AddressSanitizer + UndefinedBehaviorSanitizer: the C
#                         tests, the specs on lua5.4 and luajit, the examples
#                         (in build-asan)
#   make check-tsan       ThreadSanitizer: the same (in build-tsan)
#   make check-valgrind   memcheck: the C tests, $(VG_SPECS) on lua5.4, the
#                         producer/consumer examples in C and Lua (in
#                         build-vg)
#   make fuzz             libFuzzer on the codec's decoder for $(FUZZ_SECONDS)
#                         seconds, from the seed corpus fuzz/corpus (in
#                         build-fuzz); prints executions and coverage
#   make fuzz-corpus      regenerate fuzz/corpus with fuzz/make_corpus.lua
#
# Knobs:
#   SAN_CC        compiler for the sanitizer builds (default gcc: its shared
#                 runtimes libasan.so / libtsan.so can be preloaded)
#   FUZZ_CC       compiler for the fuzzer (default clang: libFuzzer)
#   FUZZ_SECONDS  length of the fuzz run (default 60)
#   FUZZ_LUA      the Lua the fuzzer links (default lua5.4)
#   VG_SPECS      the spec files run under valgrind (all but the stress and
#                 the long-timeout ones: valgrind is 20-50x slower)
#
# How the interpreters are checked. Our code (the core and the module) is
# built with the sanitizer; the Debian interpreters (lua5.4, luajit) are
# not. The sanitizer's shared runtime is preloaded (LD_PRELOAD) into the
# interpreter, so it intercepts malloc/free and the pthread calls of the
# whole process and instruments every access our code makes. Errors are
# fatal (halt_on_error, -fno-sanitize-recover) and the exit code is checked.
# The suppression files say what is not ours and why:
#   mk/lsan.supp   leaks that are not ours (LeakSanitizer)
#   mk/tsan.supp   ThreadSanitizer reports that are not ours

SAN_CC ?= gcc
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_LUA ?= lua5.4

ASAN_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
TSAN_SAN := -fsanitize=thread -fno-omit-frame-pointer
SAN_OPT := -O1 -g

ASAN_RT := $(shell $(SAN_CC) -print-file-name=libasan.so 2>/dev/null)
UBSAN_RT := $(shell $(SAN_CC) -print-file-name=libubsan.so 2>/dev/null)
TSAN_RT := $(shell $(SAN_CC) -print-file-name=libtsan.so 2>/dev/null)

ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1:check_initialization_order=1 \
            LSAN_OPTIONS=suppressions=$(CURDIR)/mk/lsan.supp:print_suppressions=0 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV := TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/mk/tsan.supp"

# The spec files valgrind runs on lua5.4: every one but the stress spec
# (minutes under valgrind; ASan and TSan run it).
VG_SPECS ?= $(filter-out spec/stress_spec.lua,$(wildcard spec/*_spec.lua))
VG := valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --show-leak-kinds=definite,indirect --track-origins=no --quiet \
      --suppressions=$(CURDIR)/mk/valgrind.supp

.PHONY: check-asan check-tsan check-valgrind fuzz fuzz-build fuzz-corpus \
        san-spec san-examples

# One interpreter per spec file: under ThreadSanitizer a process's shadow
# state only grows, and the whole suite in one process slowed to minutes.
SPECS ?= $(wildcard spec/*_spec.lua)
# The interpreter: the Debian one, or (SAN_LUA_DEP=host) mk/lua_host.c
# built with the sanitizer (see there why TSan needs it).
SAN_LUA ?= $(LUA)
HOST := $(B)/host/$(LUA)
ifeq ($(SAN_LUA_DEP),host)
  override SAN_LUA := $(HOST)
  override SAN_LUA_DEP := $(HOST)
endif

# ---- one flavour of a sanitized run (called with B, SAN, RUNENV) --------

# The specs on $(LUA), the interpreter with the runtime preloaded (and the
# worker of distributed blocks built with the sanitizer: workers_spec
# starts it, and a report in its output fails the test).
san-spec: $(MODULE) $(SAN_LUA_DEP) $(TUNNEL_CMD) $(WORKER_CMD) lib
	@set -e; for f in $(SPECS); do echo "== $(SAN_LUA) $$f"; \
	  $(LUA_ENV) TUNNEL_LUA=$(SAN_LUA) $(RUNENV) $(call BUSTED_RUN,$(SAN_LUA)) \
	  $$f; done

# Every example: C ones directly, Lua ones in the preloaded interpreter
# (TUNNEL_LUA: the one an example starts its own processes with).
san-examples: $(MODULE) $(C_EXAMPLES) $(SAN_LUA_DEP)
	@set -e; for e in $(C_EXAMPLES); do echo "== $$e"; \
	  $(CHECKENV) $$e > /dev/null; done
	@set -e; for e in examples/*.lua; do echo "== $(SAN_LUA) $$e"; \
	  $(LUA_ENV) TUNNEL_LUA=$(SAN_LUA) $(RUNENV) $(SAN_LUA) $$e > /dev/null; \
	  done

$(HOST): mk/lua_host.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -o $@ $< $(LDFLAGS_ALL) \
	  $(shell pkg-config --libs $(LUA_PC))

# ---- AddressSanitizer + UBSan --------------------------------------------

ASAN_MAKE := $(MAKE) --no-print-directory B=build-asan CC=$(SAN_CC) \
             OPT="$(SAN_OPT)" SAN="$(ASAN_SAN)"

check-asan:
	$(ASAN_MAKE) build-asan/test/run
	$(ASAN_ENV) build-asan/test/run
	$(ASAN_MAKE) san-spec LUA=lua5.4 \
	  RUNENV='$(ASAN_ENV) LD_PRELOAD=$(ASAN_RT)'
	$(ASAN_MAKE) san-spec LUA=luajit \
	  RUNENV='$(ASAN_ENV) LD_PRELOAD=$(ASAN_RT)'
	$(ASAN_MAKE) san-examples LUA=lua5.4 CHECKENV='$(ASAN_ENV)' \
	  RUNENV='$(ASAN_ENV) LD_PRELOAD=$(ASAN_RT)'
	@echo "check-asan: passed"

# ---- ThreadSanitizer -----------------------------------------------------

TSAN_MAKE := $(MAKE) --no-print-directory B=build-tsan CC=$(SAN_CC) \
             OPT="$(SAN_OPT)" SAN="$(TSAN_SAN)"

check-tsan:
	$(TSAN_MAKE) build-tsan/test/run
	$(TSAN_ENV) build-tsan/test/run
	$(TSAN_MAKE) san-spec LUA=lua5.4 SAN_LUA_DEP=host RUNENV='$(TSAN_ENV)'
	$(TSAN_MAKE) san-spec LUA=luajit SAN_LUA_DEP=host RUNENV='$(TSAN_ENV)'
	$(TSAN_MAKE) san-examples LUA=lua5.4 SAN_LUA_DEP=host \
	  CHECKENV='$(TSAN_ENV)' RUNENV='$(TSAN_ENV)'
	@echo "check-tsan: passed"

# ---- valgrind ------------------------------------------------------------

# TN_MEMCHECK: no blob pool (memcheck sees every blob's malloc and free)
# and no spinning (valgrind runs one thread at a time); see internal.h.
VG_MAKE := $(MAKE) --no-print-directory B=build-vg OPT="-O1 -g" \
           CFLAGS=-DTN_MEMCHECK

check-valgrind:
	$(VG_MAKE) build-vg/test/run module build-vg/examples/producer_consumer
	TN_TEST_SLOW=1 $(VG) build-vg/test/run
	$(VG_MAKE) san-spec LUA=lua5.4 RUNENV='TN_TEST_SLOW=1 $(VG)' \
	  SPECS='$(VG_SPECS)'
	$(VG) build-vg/examples/producer_consumer > /dev/null
	$(VG_MAKE) san-examples LUA=lua5.4 C_EXAMPLES= RUNENV='$(VG)'
	@echo "check-valgrind: passed"

# ---- libFuzzer on the decoder --------------------------------------------

FUZZ_B := build-fuzz
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined \
            -fno-sanitize-recover=all
FUZZ_LUA_CFLAGS := $(shell pkg-config --cflags $(FUZZ_LUA) 2>/dev/null)
FUZZ_LUA_LIBS := $(shell pkg-config --libs $(FUZZ_LUA) 2>/dev/null)

FUZZ_MODULE := $(FUZZ_B)/$(FUZZ_LUA)/tunnel/core.so

# The module as `make module` builds it, instrumented; the harness links
# only Lua and loads the module with dlopen (see fuzz/fuzz_decode.c).
fuzz-build:
	$(MAKE) --no-print-directory B=$(FUZZ_B) CC=$(FUZZ_CC) LUA=$(FUZZ_LUA) \
	  OPT="-O1 -g" SAN="$(FUZZ_SAN)" MODULE_MAP=fuzz/exports.map module
	$(MAKE) --no-print-directory $(FUZZ_B)/fuzz_decode

$(FUZZ_B)/fuzz_decode: fuzz/fuzz_decode.c src/lua/codec.h src/lua/ltunnel.h \
                       include/tunnel.h
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Iinclude \
	  -Isrc/lua $(FUZZ_LUA_CFLAGS) -DTN_FUZZ_MODULE='"$(FUZZ_MODULE)"' \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ fuzz/fuzz_decode.c $(FUZZ_LUA_LIBS) -ldl -pthread -lm

fuzz: fuzz-build
	@mkdir -p $(FUZZ_B)/corpus
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 \
	  $(FUZZ_B)/fuzz_decode -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	  -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_B)/ $(FUZZ_B)/corpus fuzz/corpus

fuzz-corpus:
	$(MAKE) --no-print-directory B=build-rel LUA=lua5.4 module
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" \
	  LUA_CPATH="build-rel/lua5.4/?.so;;" lua5.4 fuzz/make_corpus.lua fuzz/corpus
