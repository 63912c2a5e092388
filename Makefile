# tunnel - build, test and install.
#
# Knobs (make VAR=value):
#   LUA       the Lua to build the module for and run specs with:
#             lua5.4 (default), lua5.3, lua5.2, lua5.1 or luajit
#   PREFIX    install root (default /usr/local); BINDIR, INCLUDEDIR, LIBDIR
#             (default PREFIX/lib; Debian's multiarch: /usr/lib/<triplet>),
#             PKGCONFIGDIR, LUA_SHARE and LUA_LIB (the Lua module's folders,
#             PREFIX/share/lua/<5.x> and LIBDIR/lua/<5.x>), DESTDIR
#   CC        C compiler (default cc)
#   WERROR=1  make warnings fatal (CI does)
#   SAN=...   extra sanitizer flags for every object and link
#
# Targets:
#   all          libtunnel.a and libtunnel.so, the Lua module for $(LUA),
#                the C tests, the `tunnel` command
#   test         C tests, then the specs on lua5.4, luajit, lua5.1, lua5.3
#                and lua5.2 (spec-all), then the examples
#   check-c      the C unit tests
#   spec         the busted specs on $(LUA) (BUSTED=path: another busted)
#   examples     runs every example under examples/ on $(LUA)
#   example      the producer/consumer example on $(LUA)
#   install      libtunnel (.a, and .so with its soname), tunnel.h,
#                tunnel.pc, the Lua module for $(LUA) and the `tunnel`
#                command (`tunnel logs URL NAME`); `uninstall` removes them
#   lint         luacheck (.luacheckrc)
#   rock         what luarocks builds and installs (install-rock), see
#                rockspec/; `rockspec` writes the release rockspec;
#                `check-rock`: luarocks make and luarocks test, offline
#   test-redis   the C tests and specs again, against a private redis-server
#                (scripts/with-redis.sh; cluster tests skip without one)
#   clean

LUA ?= lua5.4
# luarocks (rockspec/, build.type "make") passes its interpreter's path and
# headers: LUA=/usr/bin/lua5.3 LUA_INCDIR=/usr/include/lua5.3.
override LUA := $(notdir $(LUA))
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
LIBDIR ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CC ?= cc

# The version: TN_VERSION in include/tunnel.h, the one place it is written.
VERSION := $(shell sed -n 's/^\#define TN_VERSION "\(.*\)"/\1/p' include/tunnel.h)
# The ABI of libtunnel.so (its soname, libtunnel.so.$(SOVERSION)): raised by
# a release that changes the ABI, whatever its version number.
SOVERSION := 0

ifeq ($(LUA),lua5.4)
  LUA_VERSION := 5.4
  LUA_PC := lua5.4
else ifeq ($(LUA),luajit)
  LUA_VERSION := 5.1
  LUA_PC := luajit
else ifeq ($(LUA),lua5.3)
  LUA_VERSION := 5.3
  LUA_PC := lua5.3
else ifeq ($(LUA),lua5.2)
  LUA_VERSION := 5.2
  LUA_PC := lua5.2
else ifeq ($(LUA),lua5.1)
  LUA_VERSION := 5.1
  LUA_PC := lua5.1
else ifeq ($(LUA_INCDIR),)
  $(error LUA must be lua5.4, lua5.3, lua5.2, lua5.1 or luajit)
endif
ifneq ($(LUA_INCDIR),)
  LUA_CFLAGS ?= -I$(LUA_INCDIR)
endif
LUA_CFLAGS ?= $(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ifeq ($(WERROR),1)
  WARN += -Werror
endif
OPT ?= -O2 -g
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -pthread -Iinclude \
              $(SAN) $(CFLAGS)
LDFLAGS_ALL := -pthread $(SAN) $(LDFLAGS)
LIBS := -lhiredis -lcrypto -lm

B ?= build
CORE_SRC := $(wildcard src/core/*.c)
CORE_OBJ := $(CORE_SRC:src/core/%.c=$(B)/core/%.o)
# The Redis backend (tunnel.Cluster), on hiredis; part of libtunnel.
REDIS_SRC := $(wildcard src/redis/*.c)
REDIS_OBJ := $(REDIS_SRC:src/redis/%.c=$(B)/redis/%.o)
# The `tunnel` command (src/cli), which runs no Lua, and the worker of
# cluster blocks for $(LUA) (src/cli/worker.c, the binding in a program of
# its own), which `tunnel worker --lua $(LUA)` runs.
CLI_SRC := $(filter-out src/cli/worker.c,$(wildcard src/cli/*.c))
CLI_OBJ := $(CLI_SRC:src/cli/%.c=$(B)/cli/%.o)
TUNNEL_CMD := $(B)/tunnel
WORKER_CMD := $(B)/$(LUA)/tunnel-worker
LUA_SRC := $(wildcard src/lua/*.c)
LUA_OBJ := $(LUA_SRC:src/lua/%.c=$(B)/$(LUA)/obj/%.o)
TEST_SRC := $(wildcard test/*.c)
TEST_OBJ := $(TEST_SRC:test/%.c=$(B)/test/%.o)
MODULE := $(B)/$(LUA)/tunnel/core.so

# What the specs and examples need to find the in-tree module.
# TUNNEL_LUA tells specs which interpreter to start subprocesses with.
LUA_ENV := LUA_PATH="lua/?.lua;lua/?/init.lua;;" \
           LUA_CPATH="$(B)/$(LUA)/?.so;;" TUNNEL_LUA=$(LUA) \
           TUNNEL_BIN=$(TUNNEL_CMD)

.PHONY: all lib module test check-c spec spec-all examples example install \
        uninstall lint rock install-rock rockspec check-rock clean test-redis

all: lib module $(B)/test/run $(TUNNEL_CMD)

# The flags a build directory was made with. Objects depend on this stamp,
# which is rewritten only when the flags change: building a directory again
# with other flags (a sanitizer's, -Werror) then rebuilds it, instead of
# linking objects compiled both ways (a TSan binary with uninstrumented
# objects reports races that do not exist).
FLAGS_STAMP := $(B)/.flags
FLAGS_NOW := $(CC) $(CFLAGS_ALL) | $(LDFLAGS_ALL)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(FLAGS_NOW)' > $@.new; cmp -s $@.new $@ || mv $@.new $@; rm -f $@.new
FORCE:
.PHONY: FORCE

SHLIB := $(B)/libtunnel.so.$(VERSION)
SONAME := libtunnel.so.$(SOVERSION)
lib: $(B)/libtunnel.a $(SHLIB)
module: $(MODULE)

$(B)/core/%.o: src/core/%.c include/tunnel.h src/core/internal.h \
              $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(B)/redis/%.o: src/redis/%.c $(wildcard src/redis/*.h) include/tunnel.h \
                src/core/internal.h $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The Array kernels (src/core/array.c) are loops written for the
# vectoriser, which -O2 (its "very cheap" cost model) leaves scalar.
$(B)/core/array.o: CFLAGS_ALL += -O3

$(B)/libtunnel.a: $(CORE_OBJ) $(REDIS_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# libtunnel.so exports the functions include/tunnel.h declares, no other:
# the version script lists them (comments stripped by the preprocessor).
$(B)/libtunnel.map: include/tunnel.h
	@mkdir -p $(@D)
	{ echo '{ global:'; $(CC) -E -P -Iinclude $< | \
	  grep -oE '\btn_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u | sed 's/$$/;/'; \
	  echo 'local: *; };'; } > $@

$(SHLIB): $(CORE_OBJ) $(REDIS_OBJ) $(B)/libtunnel.map
	$(CC) -shared $(LDFLAGS_ALL) -Wl,-soname,$(SONAME) \
	  -Wl,--version-script=$(B)/libtunnel.map -o $@ $(CORE_OBJ) $(REDIS_OBJ) \
	  $(LIBS)
	ln -sf $(@F) $(B)/$(SONAME)
	ln -sf $(SONAME) $(B)/libtunnel.so

$(B)/$(LUA)/obj/%.o: src/lua/%.c $(wildcard src/lua/*.h) include/tunnel.h \
                     $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -c $< -o $@

# The module takes the core in whole; the host interpreter provides Lua.
# It exports luaopen_* only (src/lua/exports.map; the fuzzer's build, more).
MODULE_MAP ?= src/lua/exports.map
$(MODULE): $(LUA_OBJ) $(CORE_OBJ) $(REDIS_OBJ) $(MODULE_MAP)
	@mkdir -p $(@D)
	$(CC) -shared $(LDFLAGS_ALL) -Wl,--version-script=$(MODULE_MAP) \
	  -o $@ $(LUA_OBJ) $(CORE_OBJ) $(REDIS_OBJ) $(LIBS)

$(B)/test/%.o: test/%.c $(wildcard test/*.h) include/tunnel.h $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Isrc/core -c $< -o $@

$(B)/test/run: $(TEST_OBJ) $(B)/libtunnel.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(TEST_OBJ) $(B)/libtunnel.a $(LIBS)

$(B)/cli/%.o: src/cli/%.c src/cli/cli.h include/tunnel.h $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@
$(B)/cli/launch.o: CFLAGS_ALL += -DTN_CLI_LUA='"$(LUA)"'

$(TUNNEL_CMD): $(CLI_OBJ) $(B)/libtunnel.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJ) $(B)/libtunnel.a $(LIBS)

# The worker links the Lua it runs jobs with: pkg-config's, or luarocks'
# (LUA_LIBDIR, LUALIB: often the static liblua, whose functions the C
# modules that jobs require then find in the program: -rdynamic).
LUA_LIBS ?= $(if $(LUALIB),-L$(LUA_LIBDIR) -l:$(LUALIB) -rdynamic,$(shell pkg-config --libs $(LUA_PC) 2>/dev/null))
$(B)/$(LUA)/cli/worker.o: src/cli/worker.c src/cli/cli.h \
                          $(wildcard src/lua/*.h) include/tunnel.h \
                          $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -DTN_WORKER_LUA='"$(LUA)"' -c $< -o $@

$(WORKER_CMD): $(B)/$(LUA)/cli/worker.o $(B)/cli/util.o $(LUA_OBJ) \
               $(B)/libtunnel.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) $(LUA_LIBS)

all: $(WORKER_CMD)
spec: $(WORKER_CMD)
rock: $(WORKER_CMD)

# The worker goes beside `tunnel`, named for its Lua: several Luas'
# workers can be installed at once (tunnel worker --lua picks one).
install: install-worker
install-worker: $(WORKER_CMD)
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 $(WORKER_CMD) $(DESTDIR)$(BINDIR)/tunnel-worker-$(LUA)
uninstall: uninstall-worker
uninstall-worker:
	rm -f $(DESTDIR)$(BINDIR)/tunnel-worker-$(LUA)
install-rock: install-rock-worker
install-rock-worker: $(WORKER_CMD)
	install -d $(INST_BINDIR)
	install -m 755 $(WORKER_CMD) $(INST_BINDIR)/tunnel-worker-$(LUA)
.PHONY: install-worker uninstall-worker install-rock-worker

$(B)/examples/%: examples/%.c $(B)/libtunnel.a $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libtunnel.a $(LIBS)

check-c: $(B)/test/run
	$(B)/test/run

# busted: the one on PATH, or BUSTED=path. A Lua script (Debian's) runs
# with $(LUA); a wrapper (luarocks' bin/busted) is told --lua=$(LUA).
BUSTED ?= $(shell command -v busted 2>/dev/null || echo busted)
BUSTED_RUN = $(if $(shell head -c 64 $(BUSTED) 2>/dev/null | grep -a '^\#!.*lua'),$(1) $(BUSTED),$(BUSTED) --lua=$(1))

spec: $(MODULE) $(TUNNEL_CMD) lib
	$(LUA_ENV) $(call BUSTED_RUN,$(LUA)) spec

# The Lua side on every flavour we support.
# The soak spec runs its full 30 s on lua5.4 and luajit, 10 s on the others.
spec-all:
	$(MAKE) spec LUA=lua5.4
	$(MAKE) spec LUA=luajit
	$(MAKE) spec LUA=lua5.1 TUNNEL_SOAK_SECONDS=10
	$(MAKE) spec LUA=lua5.3 TUNNEL_SOAK_SECONDS=10
	$(MAKE) spec LUA=lua5.2 TUNNEL_SOAK_SECONDS=10

LUACHECK ?= luacheck
lint:
	$(LUACHECK) -q .

test: lint check-c spec-all examples

C_EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))

examples: $(MODULE) $(C_EXAMPLES)
	@set -e; for e in $(C_EXAMPLES); do echo "== $$e"; $$e > /dev/null; done
	@set -e; for e in examples/*.lua; do echo "== $(LUA) $$e"; \
	  $(LUA_ENV) $(LUA) $$e > /dev/null; done

example: $(MODULE)
	$(LUA_ENV) $(LUA) examples/producer_consumer.lua

LUA_SHARE ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LUA_LIB ?= $(LIBDIR)/lua/$(LUA_VERSION)
LUA_FILES := $(notdir $(wildcard lua/tunnel/*.lua))

install: lib $(MODULE) $(TUNNEL_CMD)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	  $(DESTDIR)$(LUA_SHARE)/tunnel $(DESTDIR)$(LUA_LIB)/tunnel
	install -m 644 include/tunnel.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(B)/libtunnel.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libtunnel.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	  -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@VERSION@|$(VERSION)|' tunnel.pc.in \
	  > $(DESTDIR)$(PKGCONFIGDIR)/tunnel.pc
	install -m 644 lua/tunnel/*.lua $(DESTDIR)$(LUA_SHARE)/tunnel/
	install -m 755 $(MODULE) $(DESTDIR)$(LUA_LIB)/tunnel/
	install -m 755 $(TUNNEL_CMD) $(DESTDIR)$(BINDIR)/tunnel

# What install put there (the Lua module of $(LUA)); folders it made and
# left empty go too.
uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/tunnel.h $(DESTDIR)$(LIBDIR)/libtunnel.a \
	  $(DESTDIR)$(LIBDIR)/libtunnel.so.$(VERSION) \
	  $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libtunnel.so \
	  $(DESTDIR)$(PKGCONFIGDIR)/tunnel.pc $(DESTDIR)$(BINDIR)/tunnel \
	  $(DESTDIR)$(LUA_LIB)/tunnel/core.so \
	  $(addprefix $(DESTDIR)$(LUA_SHARE)/tunnel/,$(LUA_FILES))
	-rmdir $(DESTDIR)$(LUA_SHARE)/tunnel $(DESTDIR)$(LUA_LIB)/tunnel 2>/dev/null

# luarocks: `luarocks make` runs `make rock` and `make install-rock` with
# its Lua (LUA, LUA_INCDIR) and the rock's folders (INST_LUADIR,
# INST_LIBDIR, INST_BINDIR); rockspec/.
rock: $(MODULE) $(TUNNEL_CMD)

install-rock: rock
	install -d $(INST_LUADIR)/tunnel $(INST_LIBDIR)/tunnel $(INST_BINDIR)
	install -m 644 lua/tunnel/*.lua $(INST_LUADIR)/tunnel/
	install -m 755 $(MODULE) $(INST_LIBDIR)/tunnel/
	install -m 755 $(TUNNEL_CMD) $(INST_BINDIR)/tunnel

# `luarocks make` then `luarocks test` of the scm rockspec for Lua
# $(ROCK_LUA), in a private tree (offline: the tests use the busted
# installed; TUNNEL_SOAK_SECONDS=3).
ROCK_LUA ?= 5.3
ROCK_TREE ?= $(B)/rocktree
LUAROCKS = env -u MFLAGS -u MAKELEVEL MAKEFLAGS=-j2 luarocks --lua-version $(ROCK_LUA) --tree $(abspath $(ROCK_TREE))
check-rock:
	rm -rf $(ROCK_TREE)
	$(LUAROCKS) make rockspec/tunnel-scm-1.rockspec
	eval "$$($(LUAROCKS) path)" && TUNNEL_SOAK_SECONDS=3 \
	  $(LUAROCKS) test rockspec/tunnel-scm-1.rockspec
	@echo "check-rock: passed"

# The release rockspec: the scm one with TN_VERSION and its tag
# (spec/version_spec.lua checks the committed one against both).
RELEASE_ROCKSPEC := rockspec/tunnel-$(VERSION)-1.rockspec
rockspec: $(RELEASE_ROCKSPEC)
$(RELEASE_ROCKSPEC): rockspec/tunnel-scm-1.rockspec include/tunnel.h
	sed -e 's/^version = "scm-1"/version = "$(VERSION)-1"/' \
	  -e 's|^\(  url = .*\)$$|\1\n  tag = "v$(VERSION)",|' $< > $@

# Everything again with TUNNEL_REDIS_URL set to a private server.
test-redis: all
	scripts/with-redis.sh $(MAKE) check-c spec-all

clean:
	rm -rf build build-*

# Benchmarks (bench/bench.mk): `make bench` prints a table and writes
# bench/results.json.
-include bench/bench.mk

# Sanitizers, valgrind, fuzzing (mk/check.mk).
-include mk/check.mk
