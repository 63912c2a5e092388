# bench/bench.mk - the benchmark suite, included by the top Makefile.
#
#   make bench          build what it needs in $(B), run every case, print the
#                       table and the issue-4 targets, write bench/results.json
#   make bench-quick    the same with few items (a smoke run, < 1 minute),
#                       writing $(B)/bench/results-quick.json
#   make bench-build    only build: $(B)/bench/{core_bench,naive_queue} and
#                       the module for each of $(BENCH_LUAS)
#
# Knobs (make VAR=value or the environment):
#   BENCH_LUAS    Lua flavours to run the Lua cases on (default: lua5.4 luajit)
#   BENCH_REPEAT  repetitions per case; the median is reported (default 5)
#   BENCH_QUICK=1 few items per case (what tests use)
#   BENCH_ONLY    Lua patterns, comma-separated: run only the cases whose
#                 "name lua" matches one (e.g. BENCH_ONLY='^vector%.int,luajit')
#   BENCH_JSON    where to write the records (default bench/results.json)
#   BENCH_MD      also write the tables in Markdown to this file
#   BENCH_LOAD    N busy loops beside the run (a loaded machine; default 0)
#   BENCH_WAS     an earlier checkout built with the same B: the cases of
#                 BENCH_WAS_ONLY (default the 1P/1C integer hand-off) run
#                 from it too, in the same rounds, as "<lua>-was" (run.lua)
#
# The cluster cases (cluster.*) and their redis-benchmark baselines run when
# TUNNEL_REDIS_URL is set, e.g. against a private server:
#   scripts/with-redis.sh make B=build-bench bench
# and are skipped otherwise (bench/redis_bench.lua, docs/performance.md).
#
# Use your own build directory (make B=build-bench bench) so a benchmark
# does not race a build in build/. docs/performance.md explains the figures.

BENCH_LUAS ?= lua5.4 luajit
BENCH_JSON ?= bench/results.json
BENCH_DRIVER ?= lua5.4
BENCH_PROGS := $(B)/bench/core_bench $(B)/bench/naive_queue \
               $(B)/bench/spsc_ring $(B)/bench/array_bench

.PHONY: bench bench-quick bench-build

bench: bench-build
	BENCH_QUICK=$(BENCH_QUICK) BENCH_REPEAT=$(BENCH_REPEAT) BENCH_LOAD=$(BENCH_LOAD) \
	  $(BENCH_DRIVER) bench/run.lua --build $(B) --luas "$(BENCH_LUAS)" \
	  --json $(BENCH_JSON) --only "$(BENCH_ONLY)" --markdown "$(BENCH_MD)"

bench-quick:
	$(MAKE) --no-print-directory bench BENCH_QUICK=1 B=$(B) \
	  BENCH_JSON=$(B)/bench/results-quick.json

bench-build: $(BENCH_PROGS) $(TUNNEL_CMD)
	@set -e; for l in $(BENCH_LUAS); do \
	  $(MAKE) --no-print-directory module $(B)/$$l/tunnel-worker LUA=$$l \
	    B=$(B); done

# The plain C loops tunnel.Array's kernels are compared with get the
# kernels' -O3 (Makefile, array.o).
$(B)/bench/array_bench: CFLAGS_ALL += -O3

$(B)/bench/%: bench/%.c bench/bench.h include/tunnel.h $(B)/libtunnel.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(B)/libtunnel.a $(LIBS)
