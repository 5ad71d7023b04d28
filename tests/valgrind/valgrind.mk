# SPDX-License-Identifier: MIT
# Programs of the reliability scenarios: key generation with explicit usage
# attributes (kh-p11gen), a token-side check of a key's custody
# (kh-p11keycheck), and stress of the provider over time:
# handshake loops (8, 17), load/unload in fresh library contexts (16) and
# forks at awkward moments (9). Each tests/valgrind/kh-NAME.c becomes
# $(BUILD)/tests/kh-NAME, linked with the shared test plumbing.
REL_TOOLS_SRC := $(wildcard tests/valgrind/kh-*.c)
REL_TOOLS_BIN := $(patsubst tests/valgrind/%.c,$(BUILD)/tests/%,$(REL_TOOLS_SRC))

$(REL_TOOLS_BIN): $(BUILD)/tests/%: $(BUILD)/tests/valgrind/%.o \
		$(BUILD)/tests/helpers/kh_testutil.o $(BUILD)/libkhcommon.a
	@mkdir -p $(dir $@)
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $^ $(DEP_LIBS) -ldl -lpthread

CHECK_TARGETS += $(REL_TOOLS_BIN)
