# Builds build/ngx_creor_module.so against an nginx source tree (Debian's
# nginx-dev headers by default) and build/creor, the admin command line;
# and build/mdbfault.so, the tests' store fault injection (t/lib/mdbfault.c).

NGINX_SRC ?= /usr/share/nginx/src
BUILD     ?= build
CC        ?= cc
CFLAGS    ?= -O2 -g
SAN       ?=

TOP       := $(CURDIR)
NGXDIR    := $(BUILD)/nginx
CORE_SRC  := src/store/creor_store.c src/lib/creor_core.c src/store/creor_index.c
CORE_INCS := -Isrc/store -Isrc/lib
CLI_SRC   := src/cli/creor_cli.c $(CORE_SRC)
MOD_SRC   := $(wildcard src/*.c src/*.h src/*/*.c src/*/*.h) config

# config lists the files of the layer folders when nginx is configured: a
# file added or removed configures again (the list changes only then)
SRC_LIST  := $(BUILD)/sources.list
$(shell mkdir -p $(BUILD) && ls src/*/*.[ch] | sort >$(SRC_LIST).new \
	&& { cmp -s $(SRC_LIST).new $(SRC_LIST) \
	     || mv $(SRC_LIST).new $(SRC_LIST); }; rm -f $(SRC_LIST).new)

# Debian's nginx-dev ships configure and headers only; its configure wants
# the flags the stock binary was built with, so that --with-compat matches.
CONF_FLAGS = $(shell test -f $(NGINX_SRC)/conf_flags && \
	. $(NGINX_SRC)/conf_flags && echo "$${NGX_CONF_FLAGS[@]}")

SHELL := /bin/bash

.PHONY: all module cli fault test test-asan asan run clean bench deb fuzz \
        fuzz-build

all: module cli fault

module: $(BUILD)/ngx_creor_module.so

cli: $(BUILD)/creor

fault: $(BUILD)/mdbfault.so $(BUILD)/powercut.so

$(NGXDIR)/src/Makefile: config $(SRC_LIST)
	rm -rf $(NGXDIR) && mkdir -p $(NGXDIR)
	cp -a $(NGINX_SRC)/. $(NGXDIR)/src/
	cd $(NGXDIR)/src && ./configure --with-compat $(CONF_FLAGS) \
	    --with-cc-opt="$(CFLAGS) $(SAN) -fPIC" \
	    --with-ld-opt="$(SAN)" \
	    --add-dynamic-module=$(TOP) >$(TOP)/$(NGXDIR)/configure.log
	cp $(NGXDIR)/src/objs/Makefile $(NGXDIR)/src/Makefile.objs 2>/dev/null || true
	touch $@

$(BUILD)/ngx_creor_module.so: $(NGXDIR)/src/Makefile $(MOD_SRC)
	$(MAKE) -C $(NGXDIR)/src -f objs/Makefile modules >$(NGXDIR)/build.log 2>&1 \
	    || { cat $(NGXDIR)/build.log; exit 1; }
	grep -E 'warning:|error:' $(NGXDIR)/build.log || true
	cp $(NGXDIR)/src/objs/ngx_creor_module.so $@.tmp && mv $@.tmp $@

$(BUILD)/creor: $(CLI_SRC) src/store/creor_store.h src/lib/creor_core.h \
	    src/store/creor_index.h src/store/creor_records.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $(SAN) -Wall -Wextra -Wno-unused-parameter $(CORE_INCS) \
	    -o $@.tmp $(CLI_SRC) -llmdb -lcrypto && mv $@.tmp $@

# preloaded after libasan in ASan runs: built without the sanitizer
$(BUILD)/mdbfault.so: t/lib/mdbfault.c t/lib/preload.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Wall -Wextra -shared -fPIC -o $@.tmp $< -ldl \
	    && mv $@.tmp $@

$(BUILD)/powercut.so: t/lib/powercut.c t/lib/preload.h
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Wall -Wextra -shared -fPIC -o $@.tmp $< -ldl \
	    && mv $@.tmp $@

test: all
	prove -r t/

asan:
	$(MAKE) BUILD=build/asan SAN="-fsanitize=address -fno-omit-frame-pointer"

test-asan: asan
	CREOR_BUILD=build/asan CREOR_ASAN=1 prove -r t/

run: all
	./conf/run.sh

bench: all
	./bench/all.sh

# The Debian package libnginx-mod-http-creor, built from a copy of the tree
# by dpkg-buildpackage with Debian's nginx module helper (debian/).
deb:
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb/src
	tar -cf - --exclude=./build --exclude=./.git --exclude=node_modules . \
	    | tar -xf - -C $(BUILD)/deb/src
	cd $(BUILD)/deb/src && dpkg-buildpackage -b -us -uc \
	    >../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	ls $(BUILD)/deb/*.deb

# libFuzzer harnesses (docs/fuzzing.md): clang and lld, not in CI.  Each
# links the module files it fuzzes with fuzz/shim.c; --gc-sections drops
# the functions the harness cannot reach, and with them their references
# to the rest of nginx.

FUZZ_CC      ?= clang
FUZZ_TIME    ?= 60
FUZZ_RUNS    ?= -1
FUZZ_OPTS    ?= -rss_limit_mb=2048
FUZZ_TARGETS := json json_scan multipart multipart_rt token cursor \
                idempotency ndjson
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-ffunction-sections -fdata-sections -fuse-ld=lld -Wl,--gc-sections \
	-Wall -Wno-unused-function -Wno-unused-parameter
FUZZ_INCS     = $(addprefix -I$(NGXDIR)/src/src/, core event event/modules \
	os/unix http http/modules http/v2) -I$(NGXDIR)/src/objs -Isrc \
	$(addprefix -Isrc/, pipeline api engine http model store lib)

fuzz_json_SRC         := src/lib/creor_json.c src/lib/creor_core.c
fuzz_json_scan_SRC    := src/lib/creor_json.c src/lib/creor_core.c
fuzz_multipart_SRC    := src/http/creor_multipart.c
fuzz_multipart_rt_SRC := src/http/creor_multipart.c
fuzz_token_SRC        := src/lib/creor_core.c
fuzz_cursor_SRC       := src/lib/creor_core.c
fuzz_idempotency_SRC  := src/lib/creor_json.c src/lib/creor_core.c
fuzz_ndjson_SRC       := src/lib/creor_json.c src/lib/creor_core.c

fuzz-build: $(addprefix $(FUZZ_DIR)/, $(FUZZ_TARGETS))

$(FUZZ_DIR)/%: fuzz/%.c fuzz/shim.c fuzz/input.h $(MOD_SRC) \
	    $(NGXDIR)/src/Makefile
	@command -v $(FUZZ_CC) >/dev/null && command -v ld.lld >/dev/null \
	    || { echo "make fuzz needs clang and lld: conf/deps.sh --fuzz"; exit 1; }
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_INCS) -o $@ $< fuzz/shim.c \
	    $(fuzz_$*_SRC) -lyajl -lcrypto

# One process per harness, one after the other.  New inputs go to
# build/fuzz/corpus/<name> (fuzz/corpus/<name> is only read), crashes to
# build/fuzz/<name>-crash-*.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$t && \
	    echo "fuzz: $$t" && \
	    $(FUZZ_DIR)/$$t $(FUZZ_OPTS) -max_total_time=$(FUZZ_TIME) \
	        -runs=$(FUZZ_RUNS) -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_DIR)/$$t- \
	        $$(test -f fuzz/$$t.dict && echo -dict=fuzz/$$t.dict) \
	        $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t \
	        2>$(FUZZ_DIR)/$$t.log || { tail -40 $(FUZZ_DIR)/$$t.log; exit 1; }; \
	    grep -E '^#[0-9]+[[:space:]]+DONE|^Done' $(FUZZ_DIR)/$$t.log; \
	done

clean:
	rm -rf build
