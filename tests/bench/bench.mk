# SPDX-License-Identifier: MIT
# `make bench`: builds tests/bench/kh-bench and runs it against
# a fresh SoftHSM token (and swtpm when the TPM backend exists). Prints the
# tables and writes $(BUILD)/bench.json. BENCH_SECONDS (one window, default
# 0.5) and BENCH_ROUNDS (default 5) shorten or lengthen it. Never part of
# `make check`: nothing here is added to ALL_TARGETS or CHECK_TARGETS.
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(BENCH_SRC))
BENCH_BIN := $(BUILD)/bench/kh-bench

$(BENCH_BIN): $(BENCH_OBJ) $(BUILD)/libkhcommon.a
	@mkdir -p $(dir $@)
	$(E) "  LD      $@"
	$(Q)$(CC) $(KH_LDFLAGS) -o $@ $^ $(DEP_LIBS) -lm -ldl -lpthread

# TPM commands per signature are counted by a TCTI that forwards to swtpm.
BENCH_TCTI := $(BUILD)/bench/libtss2-tcti-khcount.so
$(BENCH_TCTI): tests/bench/tcti/tcti_khcount.c
	@mkdir -p $(dir $@)
	$(E) "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(KH_CFLAGS) -shared -o $@ $< $(KH_LDFLAGS) \
	    $(shell $(PKG_CONFIG) --libs tss2-tctildr 2>/dev/null)

# The provider is benchmarked as built; its rows say "unavailable" when it
# is missing or fails, and the other rows still run.
bench: $(filter %/keyhold.so %/keyhold-tpm.so,$(ALL_TARGETS)) $(BENCH_BIN) $(BENCH_TCTI)
	$(Q)BUILD=$(abspath $(BUILD)) tests/bench/bench.sh $(BENCH_BIN) \
	    $(abspath $(BUILD))/bench.json

# Instructions per signature for every path under callgrind (stable where
# wall-clock numbers are not); files kept in $(BUILD)/bench/profile.
.PHONY: bench-profile
bench-profile: $(filter %/keyhold.so %/keyhold-tpm.so,$(ALL_TARGETS)) $(BENCH_BIN) $(BENCH_TCTI)
	$(Q)BUILD=$(abspath $(BUILD)) tests/bench/bench.sh $(BENCH_BIN) \
	    --profile $(abspath $(BUILD))/bench/profile
