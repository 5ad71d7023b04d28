# SPDX-License-Identifier: MIT
# ACME unit test: the network-free parsers of provision/acme_parse.c, run
# by tests/run from $(BUILD)/tests/unit/.

$(BUILD)/tests/unit/acme_parse: $(BUILD)/tests/acme/acme_parse_test.o \
		$(BUILD)/provision/acme_parse.o
	$(E) "  LD      $@"
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $^

CHECK_TARGETS += $(BUILD)/tests/unit/acme_parse
