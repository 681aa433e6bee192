# `make install` and `make uninstall`, included by the top-level Makefile.
#
#     make install PREFIX=/usr/local DESTDIR=    # the defaults
#
# installs what `make` built (building it first when nothing is built, so that
# `sudo make install` after `make` never runs cargo as root):
#   $(LIBDIR)/libweft.so.$(SOVERSION).MINOR.PATCH, and the links libweft.so.$(SOVERSION)
#            (the SONAME) and libweft.so (what -lweft finds)
#   $(LIBDIR)/libweft.a
#   $(INCLUDEDIR)/weft.h, weft.hpp and the parts it includes ($(INCLUDEDIR)/weft/*.hpp),
#            and weft.cdef for cffi
#   $(LIBDIR)/pkgconfig/weft.pc
#   $(LIBDIR)/cmake/weft/weftConfig.cmake and weftConfigVersion.cmake (weft::weft,
#            weft::weft_static)
# LIBDIR and INCLUDEDIR may be set apart from PREFIX (LIBDIR=/usr/lib64). DESTDIR is
# prepended to every path written, never to the paths written into the files.

PREFIX       ?= /usr/local
# A trailing slash (PREFIX=/opt/weft/) would be doubled in the paths written to weft.pc.
override PREFIX := $(if $(filter-out /,$(PREFIX)),$(patsubst %/,%,$(PREFIX)),$(PREFIX))
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR := $(LIBDIR)/pkgconfig
CMAKEDIR     := $(LIBDIR)/cmake/weft
INSTALL      ?= install

VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))
VERSION_PATCH := $(word 3,$(subst ., ,$(VERSION)))
FULL_SOVERSION := $(SOVERSION).$(VERSION_MINOR).$(VERSION_PATCH)
SHARED_FILE  := libweft.so.$(FULL_SOVERSION)
HEADERS      := $(wildcard include/weft.h include/weft.hpp include/weft.cdef)
HPP_PARTS    := $(notdir $(wildcard include/weft/*.hpp))
# What the static library needs besides libc, as `rustc --print native-static-libs`
# lists it for Linux; written into weft.pc (Libs.private) and the CMake package.
STATIC_LIBS  := pthread dl m rt util gcc_s
empty :=
space := $(empty) $(empty)

# Paths relative to one another, so the CMake package still works when the installed
# tree is moved (pkg-config files, by custom, hold absolute paths). As text (-s): a
# symlink on this machine (/lib64 -> usr/lib64) says nothing of where CMake finds it.
relative = $(shell realpath -m -s --relative-to='$(1)' '$(2)')

define substitute
sed -e 's|@prefix@|$(PREFIX)|g' -e 's|@libdir@|$(LIBDIR)|g' -e 's|@includedir@|$(INCLUDEDIR)|g' \
    -e 's|@version@|$(VERSION)|g' -e 's|@version_major@|$(VERSION_MAJOR)|g' \
    -e 's|@version_minor@|$(VERSION_MINOR)|g' -e 's|@abi_version@|$(ABI_VERSION)|g' \
    -e 's|@soversion@|$(SOVERSION)|g' -e 's|@full_soversion@|$(FULL_SOVERSION)|g' \
    -e 's|@cmake_to_prefix@|$(call relative,$(CMAKEDIR),$(PREFIX))|g' \
    -e 's|@libdir_rel@|$(call relative,$(PREFIX),$(LIBDIR))|g' \
    -e 's|@includedir_rel@|$(call relative,$(PREFIX),$(INCLUDEDIR))|g' \
    -e 's|@sizeof_void_p@|$(shell expr $$(getconf LONG_BIT) / 8)|g' \
    -e 's|@static_libs_pc@|$(addprefix -l,$(STATIC_LIBS))|g' \
    -e 's|@static_libs_cmake@|$(subst $(space),;,$(STATIC_LIBS))|g'
endef

# $(call generate,template,destination): the template substituted, installed with mode
# 0644 whatever the umask.
define generate
@echo "writing $(DESTDIR)$(2)"
@$(substitute) $(1) > '$(DESTDIR)$(2).tmp'
@$(INSTALL) -m 0644 '$(DESTDIR)$(2).tmp' '$(DESTDIR)$(2)' && rm -f '$(DESTDIR)$(2).tmp'
endef

.PHONY: install uninstall

$(TARGET_DIR)/libweft.so $(TARGET_DIR)/libweft.a:
	$(MAKE) build

install: $(TARGET_DIR)/libweft.so $(TARGET_DIR)/libweft.a
	@for dir in PREFIX='$(PREFIX)' LIBDIR='$(LIBDIR)' INCLUDEDIR='$(INCLUDEDIR)'; do \
	    case "$${dir#*=}" in /*) ;; *) echo "make install: $${dir%%=*} must be an absolute path, not '$${dir#*=}'" >&2; exit 1;; esac; \
	done
	$(INSTALL) -d '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(INCLUDEDIR)/weft' '$(DESTDIR)$(PKGCONFIGDIR)' '$(DESTDIR)$(CMAKEDIR)'
	$(INSTALL) -m 0755 $(TARGET_DIR)/libweft.so '$(DESTDIR)$(LIBDIR)/$(SHARED_FILE)'
	ln -sf $(SHARED_FILE) '$(DESTDIR)$(LIBDIR)/libweft.so.$(SOVERSION)'
	ln -sf libweft.so.$(SOVERSION) '$(DESTDIR)$(LIBDIR)/libweft.so'
	$(INSTALL) -m 0644 $(TARGET_DIR)/libweft.a '$(DESTDIR)$(LIBDIR)/libweft.a'
	$(INSTALL) -m 0644 $(HEADERS) '$(DESTDIR)$(INCLUDEDIR)/'
	$(INSTALL) -m 0644 $(addprefix include/weft/,$(HPP_PARTS)) '$(DESTDIR)$(INCLUDEDIR)/weft/'
	$(call generate,packaging/weft.pc.in,$(PKGCONFIGDIR)/weft.pc)
	$(call generate,packaging/weftConfig.cmake.in,$(CMAKEDIR)/weftConfig.cmake)
	$(call generate,packaging/weftConfigVersion.cmake.in,$(CMAKEDIR)/weftConfigVersion.cmake)

uninstall:
	rm -f '$(DESTDIR)$(LIBDIR)/$(SHARED_FILE)' '$(DESTDIR)$(LIBDIR)/libweft.so.$(SOVERSION)' \
	      '$(DESTDIR)$(LIBDIR)/libweft.so' '$(DESTDIR)$(LIBDIR)/libweft.a' \
	      '$(DESTDIR)$(INCLUDEDIR)/weft.h' '$(DESTDIR)$(INCLUDEDIR)/weft.hpp' '$(DESTDIR)$(INCLUDEDIR)/weft.cdef' \
	      $(foreach f,$(HPP_PARTS),'$(DESTDIR)$(INCLUDEDIR)/weft/$(f)') \
	      '$(DESTDIR)$(PKGCONFIGDIR)/weft.pc' \
	      '$(DESTDIR)$(CMAKEDIR)/weftConfig.cmake' '$(DESTDIR)$(CMAKEDIR)/weftConfigVersion.cmake'
	rmdir '$(DESTDIR)$(CMAKEDIR)' '$(DESTDIR)$(INCLUDEDIR)/weft' 2>/dev/null || true
