# SPDX-License-Identifier: MIT
# C unit tests: each tests/unit/NAME.c becomes $(BUILD)/tests/unit/NAME,
# which tests/run executes. They need no token.
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(BUILD)/libkhcommon.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $^ $(DEP_LIBS) -ldl -lpthread

CHECK_TARGETS += $(UNIT_BIN)
