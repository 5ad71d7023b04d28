# SPDX-License-Identifier: MIT
# The minimal SCEP responder of the SCEP scenarios (tests/scep_*.sh):
# $(BUILD)/tests/scep-responder, a software CA over HTTP on 127.0.0.1.
$(BUILD)/tests/scep-responder: $(BUILD)/tests/scep/scep-responder.o
	@mkdir -p $(dir $@)
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $^ $(DEP_LIBS)

CHECK_TARGETS += $(BUILD)/tests/scep-responder
