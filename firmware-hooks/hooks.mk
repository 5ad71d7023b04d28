# SPDX-License-Identifier: MIT
# firmware-hooks: systemd units, the server drop-in, openssl.cnf for servers
# and the appliance hooks. Paths inside them are substituted at build time
# from PREFIX/BINDIR/SYSCONFDIR..., so an install into a temporary root with
# PREFIX pointing inside it yields units whose ExecStart= paths exist there.

KH_STATEDIR ?= /var/lib/keyhold
KH_TOKENDIR ?= /var/lib/softhsm/tokens
KH_PROMDIR ?= /var/lib/prometheus/node-exporter
DOCDIR ?= $(PREFIX)/share/doc/keyhold
KH_DATADIR ?= $(PREFIX)/share/keyhold
SYSUSERSDIR ?= $(shell $(PKG_CONFIG) --variable=sysusersdir systemd 2>/dev/null || echo /usr/lib/sysusers.d)
TMPFILESDIR ?= $(shell $(PKG_CONFIG) --variable=tmpfilesdir systemd 2>/dev/null || echo /usr/lib/tmpfiles.d)

FWH_UNITS_IN := keyhold-boot.service keyhold-renew.service keyhold-factory-reset.service
FWH_UNITS_PLAIN := keyhold-renew.timer keyhold-ready.target
FWH_HOOKS := boot-check server-check pre-update post-update field-rekey factory-reset
FWH_OUT := $(BUILD)/firmware-hooks

FWH_GEN := $(addprefix $(FWH_OUT)/units/,$(FWH_UNITS_IN) keyhold-server.conf keyhold.tmpfiles) \
	$(addprefix $(FWH_OUT)/hooks/,$(FWH_HOOKS) common.sh) \
	$(FWH_OUT)/openssl.cnf

# Every @NAME@ the templates may use; the hardening block is spliced first.
FWH_SUBST = sed -e '/@HARDENING@/{r firmware-hooks/units/hardening.inc' -e 'd;}' $< | \
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    -e 's|@HOOKSDIR@|$(HOOKSDIR)|g' -e 's|@STATEDIR@|$(KH_STATEDIR)|g' \
	    -e 's|@TOKENDIR@|$(KH_TOKENDIR)|g' -e 's|@PROMDIR@|$(KH_PROMDIR)|g' \
	    -e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@MODULESDIR@|$(MODULESDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g'

# The substituted paths are part of the output: rebuild when they change.
FWH_STAMP := $(FWH_OUT)/.paths-$(shell echo '$(BINDIR):$(SYSCONFDIR):$(HOOKSDIR):$(KH_STATEDIR):$(KH_TOKENDIR):$(KH_PROMDIR):$(DOCDIR):$(MODULESDIR)' | cksum | cut -d' ' -f1)

$(FWH_STAMP):
	@mkdir -p $(dir $@)
	$(Q)rm -f $(FWH_OUT)/.paths-*
	$(Q)touch $@

$(FWH_OUT)/units/%: firmware-hooks/units/%.in firmware-hooks/units/hardening.inc $(FWH_STAMP)
	@mkdir -p $(dir $@)
	$(E) "  GEN     $@"
	$(Q)$(FWH_SUBST) >$@.tmp.$$$$ && mv $@.tmp.$$$$ $@

$(FWH_OUT)/hooks/%: firmware-hooks/hooks/%.in $(FWH_STAMP)
	@mkdir -p $(dir $@)
	$(E) "  GEN     $@"
	$(Q)$(FWH_SUBST) >$@.tmp.$$$$ && chmod 0755 $@.tmp.$$$$ && mv $@.tmp.$$$$ $@

$(FWH_OUT)/openssl.cnf: firmware-hooks/openssl.cnf.in $(FWH_STAMP)
	@mkdir -p $(dir $@)
	$(E) "  GEN     $@"
	$(Q)$(FWH_SUBST) >$@.tmp.$$$$ && mv $@.tmp.$$$$ $@

install-hooks: $(FWH_GEN)
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(HOOKSDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/keyhold $(DESTDIR)$(KH_DATADIR)/systemd \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR)
	install -m 0644 $(addprefix $(FWH_OUT)/units/,$(FWH_UNITS_IN)) \
	    $(addprefix firmware-hooks/units/,$(FWH_UNITS_PLAIN)) $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -m 0644 $(FWH_OUT)/units/keyhold-server.conf $(DESTDIR)$(KH_DATADIR)/systemd/
	install -m 0644 firmware-hooks/units/keyhold.sysusers $(DESTDIR)$(SYSUSERSDIR)/keyhold.conf
	install -m 0644 $(FWH_OUT)/units/keyhold.tmpfiles $(DESTDIR)$(TMPFILESDIR)/keyhold.conf
	install -m 0755 $(addprefix $(FWH_OUT)/hooks/,$(FWH_HOOKS)) $(DESTDIR)$(HOOKSDIR)/
	install -m 0644 $(FWH_OUT)/hooks/common.sh $(DESTDIR)$(HOOKSDIR)/
	install -m 0644 $(FWH_OUT)/openssl.cnf $(DESTDIR)$(SYSCONFDIR)/keyhold/openssl.cnf
	install -m 0644 firmware-hooks/keyhold.default $(DESTDIR)$(KH_DATADIR)/keyhold.default
	if [ -f docs/appliance.md ]; then install -m 0644 docs/appliance.md $(DESTDIR)$(DOCDIR)/; fi

.PHONY: install-hooks
ALL_TARGETS += $(FWH_GEN)
INSTALL_TARGETS += install-hooks
