# SPDX-License-Identifier: MIT
# C test programs used by the scenario scripts: each tests/helpers/kh-NAME.c
# becomes $(BUILD)/tests/kh-NAME, linked with the shared test plumbing
# (kh_testutil.c) and libkhcommon.a. Built before the tests run.
HELPERS_SRC := $(wildcard tests/helpers/kh-*.c)
HELPERS_BIN := $(patsubst tests/helpers/%.c,$(BUILD)/tests/%,$(HELPERS_SRC))

# A static pattern rule names the objects, so make keeps them.
$(HELPERS_BIN): $(BUILD)/tests/%: $(BUILD)/tests/helpers/%.o \
		$(BUILD)/tests/helpers/kh_testutil.o $(BUILD)/libkhcommon.a
	@mkdir -p $(dir $@)
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $^ $(DEP_LIBS) -ldl -lpthread

CHECK_TARGETS += $(HELPERS_BIN)
