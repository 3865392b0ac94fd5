# netsmith: build, test, demo. `make demo` and `make check` are the two commands
# a user types on a fresh Debian 12 machine; both install what is missing first.
#
# Build switches:
#   BUILD=dir      where objects and programs go (default: build, programs in bin/)
#   SAN=1          ASan + UBSan build (what `make sanitize` does, into build/san)
#   PREFIX=/usr/local  for `make install`
#   MPI=0|1        build net-train and vlm-train with Open MPI (default: 1 when
#                  pkg-config finds ompi-c, from Debian's libopenmpi-dev)

# Every core by default; an explicit -jN on the command line wins. Only the
# make a user starts: the recursive ones share its jobserver (setting -j
# again there would warn "-jN forced in makefile: resetting jobserver mode").
ifeq ($(MAKELEVEL),0)
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
endif
endif

PREFIX   ?= /usr/local
BUILD    ?= build
SAN      ?= 0
VERSION  := 0.1.0

CC       ?= cc
BLIS_INC := /usr/include/x86_64-linux-gnu/blis-openmp
PKGS     := msgpack libarchive libpng
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror -fopenmp -D_GNU_SOURCE \
            -DNS_VERSION='"$(VERSION)"' -Ilib -isystem $(BLIS_INC) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += -lblis $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
LDFLAGS  += -fopenmp

# Open MPI is optional: with it, net-train and vlm-train train data-parallel
# under mpirun (lib/nn/dist.c, the only file that includes mpi.h); without it
# they are one process, as they are anyway when started without mpirun.
MPI      ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
MPI_CFLAGS := -DNS_HAVE_MPI $(patsubst -I%,-isystem %,$(shell pkg-config --cflags ompi-c))
MPI_LIBS   := $(shell pkg-config --libs ompi-c)
endif

ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
BINDIR   := $(BUILD)/bin
else
BINDIR   := bin
endif

LIB_SRC   := $(sort $(wildcard lib/*/*.c))
LIB_OBJ   := $(LIB_SRC:lib/%.c=$(BUILD)/lib/%.o)
LIB       := $(BUILD)/libnetsmith.a
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TOOLS     := $(TOOL_SRC:tools/%.c=$(BINDIR)/%)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNITS     := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all build deps check units sanitize check-sanitize demo bench fuzz install clean
.DELETE_ON_ERROR:

# The public targets check the Debian packages first, then build in a
# sub-make, so pkg-config's flags are read after any install.
all:
	@sh tests/deps.sh
	@$(MAKE) --no-print-directory build

build: $(LIB) $(TOOLS)

# The optional Open MPI too (data-parallel net-train and vlm-train).
deps:
	@NS_EXTRA_PKGS='libopenmpi-dev openmpi-bin' sh tests/deps.sh

# Each object depends on the headers it includes (-MMD writes them down).
$(BUILD)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(LIB_OBJ:.o=.d)

# dist.o is rebuilt when MPI is switched (a stamp per setting); the programs
# that call ns_dist_init link MPI.
$(BUILD)/mpi-$(MPI):
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/mpi-*
	@touch $@
$(BUILD)/lib/nn/dist.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/lib/nn/dist.o: $(BUILD)/mpi-$(MPI)
$(BINDIR)/net-train $(BINDIR)/vlm-train: LDLIBS += $(MPI_LIBS)

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BINDIR)/%: tools/%.c $(LIB) $(wildcard lib/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# --- tests ------------------------------------------------------------------
units: build $(UNITS)

# Every suite, then the untrusted-input suites again under ASan/UBSan, in one count.
check:
	@NS_EXTRA_PKGS='python3-msgpack python3-numpy groff-base dataset-fashion-mnist' sh tests/deps.sh
	@$(MAKE) --no-print-directory units
	@$(MAKE) --no-print-directory SAN=1 BUILD=build/san build $(patsubst $(BUILD)/%,build/san/%,$(UNITS))
	@BINDIR=$(BINDIR) UNITDIR=$(BUILD)/tests SAN_BINDIR=build/san/bin SAN_UNITDIR=build/san/tests sh tests/run.sh

sanitize:
	@sh tests/deps.sh
	@$(MAKE) --no-print-directory SAN=1 BUILD=build/san build $(patsubst $(BUILD)/%,build/san/%,$(UNITS))

# The malformed-input tests again, under ASan/UBSan.
check-sanitize: sanitize
	@BINDIR=build/san/bin UNITDIR=build/san/tests SANITIZE=1 sh tests/run.sh

# --- demo, bench, fuzz ------------------------------------------------------
# demo.sh's makes run their steps one job at a time: they get the flags and
# variables of `make demo` but not its jobserver (without which each would
# warn "jobserver unavailable: using -j1").
demo:
	@NS_EXTRA_PKGS='dataset-fashion-mnist' sh tests/deps.sh
	@$(MAKE) --no-print-directory build
	@MAKEFLAGS="$$(echo "$$MAKEFLAGS" | sed 's/ -j[0-9]* --jobserver-[a-z]*=[^ ]*//')" \
	    sh pipelines/demo.sh $(if $(ARCH),ARCH="$(ARCH)") $(if $(EPOCHS),EPOCHS=$(EPOCHS))

bench:
	@NS_EXTRA_PKGS='dataset-fashion-mnist time python3-torch python3-scipy python3-msgpack' sh tests/deps.sh
	@$(MAKE) --no-print-directory build $(BENCHES)
	@sh bench/run.sh

fuzz:
	@sh fuzz/run.sh $(FUZZ_SECONDS)

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/man5/*.5 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 man/man7/*.7 $(DESTDIR)$(PREFIX)/share/man/man7

clean:
	rm -rf build bin
