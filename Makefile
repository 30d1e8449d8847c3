# livewidget: the PostgreSQL extension (PGXS) and the bridge daemon.
#
#   make                 build the extension and bridge/livewidget-bridge
#   make install         install both (PREFIX=/usr/local for the bridge)
#   make installcheck    pg_regress against the server in PG* variables
#   make format-check    the mechanical part of the house style
#
# The version lives here, in livewidget.control and in META.json; the
# "version-check" target fails when they disagree, and checks META.json
# against the PGXN Meta Spec 1.0.0 (test/meta-check).

EXTENSION = livewidget
EXTVERSION = 0.2.0

MODULE_big = livewidget
OBJS = extension/livewidget.o extension/sample_json.o extension/buffer.o \
	extension/track.o extension/samples.o extension/attach.o \
	extension/lookup.o extension/store.o extension/order.o \
	extension/pending.o
DATA = $(wildcard extension/livewidget--*.sql)
PGFILEDESC = "livewidget - live dashboard-widget buffers"

REGRESS = setup buffer track samples refill privileges roles attach commit \
	prepared device
REGRESS_OPTS = --inputdir=. --dbname=livewidget_regress
ISOLATION = notify concurrent_writers track_race attach_race lookup_cache \
	eight_writers ingest_role notify_queue lookup_invalidation hand_edit \
	track_two_tables
ISOLATION_OPTS = --load-extension=livewidget

PG_CPPFLAGS = -I$(srcdir)/extension -DLW_EXTVERSION='"$(EXTVERSION)"'
PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

PREFIX ?= /usr/local

# PGXS does not track header dependencies.
$(OBJS): $(wildcard extension/*.h)

all: bridge

.PHONY: bridge install-bridge clean-bridge format-check version-check

# PREFIX is compiled into the bridge (where it finds the dashboard page),
# so give the same one to "make" and "make install".
bridge:
	$(MAKE) -C bridge PREFIX=$(PREFIX)

install: install-bridge

install-bridge: bridge
	$(MAKE) -C bridge install PREFIX=$(PREFIX)

clean: clean-bridge

clean-bridge:
	$(MAKE) -C bridge clean

# Lines over 100 columns outside strings, '//' comments and spaces used
# for indentation in C files.
format-check:
	@./test/format-check

version-check:
	@grep -q "default_version = '$(EXTVERSION)'" livewidget.control || \
		{ echo "livewidget.control does not say $(EXTVERSION)"; exit 1; }
	@grep -q '"version": "$(EXTVERSION)"' META.json || \
		{ echo "META.json does not say $(EXTVERSION)"; exit 1; }
	@test -f extension/livewidget--$(EXTVERSION).sql || \
		{ echo "extension/livewidget--$(EXTVERSION).sql is missing"; exit 1; }
	@./test/meta-check META.json $(EXTVERSION)
