# SPDX-License-Identifier: MIT
# The fault-injecting PKCS#11 module used by the reliability tests
# ($(BUILD)/tests/libkhshim.so) and its self-test against SoftHSM
# ($(BUILD)/tests/unit/p11shim_selftest, run by tests/run with the unit
# tests). The module exports C_GetFunctionList only.

# Return-code names come from libkhcommon (kept private to the module).
$(BUILD)/tests/libkhshim.so: $(BUILD)/tests/p11shim/shim.o $(BUILD)/libkhcommon.a
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -shared -Wl,-z,defs -Wl,--exclude-libs,ALL -o $@ $^ -ldl -lpthread

$(BUILD)/tests/p11shim/shim.o: EXTRA_CFLAGS_tests += -fvisibility=hidden

$(BUILD)/tests/unit/p11shim_selftest: $(BUILD)/tests/p11shim/shim_selftest.o \
		$(BUILD)/tests/libkhshim.so
	@mkdir -p $(dir $@)
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $(BUILD)/tests/p11shim/shim_selftest.o \
	    -ldl -lpthread

CHECK_TARGETS += $(BUILD)/tests/libkhshim.so $(BUILD)/tests/unit/p11shim_selftest
