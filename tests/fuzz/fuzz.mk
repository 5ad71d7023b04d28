# SPDX-License-Identifier: MIT
# libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined), built into
# $(BUILD)/fuzz/fuzz_NAME from tests/fuzz/fuzz_NAME.c plus the project
# sources it exercises, compiled again with the fuzzing flags. 'make check'
# runs each for a few seconds through tests/fuzz_NAME.sh; 'make fuzz' runs
# each for FUZZ_SECONDS (default 120) on a growing corpus in
# $(BUILD)/fuzz/work/NAME, seeded from tests/fuzz/corpus/NAME.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 120
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE \
	-DKH_VERSION='"$(VERSION)"' -Iengine -Iengine/common $(DEP_CFLAGS)

# NAME -> project sources linked into its harness.
FUZZ_SRC_uri := engine/common/kh_uri.c engine/common/kh_errbuf.c
FUZZ_SRC_keyref := engine/common/kh_keyref.c engine/common/kh_uri.c engine/common/kh_errbuf.c
FUZZ_NAMES := uri keyref

# Parsers of the CLI join when their sources exist.
ifneq ($(wildcard provision/config.c provision/names.c provision/util.c),)
FUZZ_SRC_config := provision/config.c provision/names.c provision/util.c
FUZZ_SRC_names := provision/names.c provision/config.c provision/util.c
FUZZ_NAMES += config names
endif
ifneq ($(wildcard provision/est_parse.c),)
FUZZ_SRC_est := provision/est_parse.c
FUZZ_NAMES += est
endif

ifneq ($(wildcard provision/acme_parse.c),)
FUZZ_SRC_acme := provision/acme_parse.c
FUZZ_NAMES += acme
endif
ifneq ($(wildcard engine/tpm/tpm_keyfile.c),)
FUZZ_SRC_tpmkey := engine/tpm/tpm_keyfile.c
FUZZ_NAMES += tpmkey
$(BUILD)/fuzz/obj/tests/fuzz/fuzz_tpmkey.o: FUZZ_CFLAGS += -Iengine/tpm $(TSS_CFLAGS)
$(BUILD)/fuzz/obj/engine/tpm/tpm_keyfile.o: FUZZ_CFLAGS += -Iengine/tpm $(TSS_CFLAGS)
FUZZ_LIBS_tpmkey := $(TSS_LIBS)
endif

FUZZ_BINS := $(foreach n,$(FUZZ_NAMES),$(BUILD)/fuzz/fuzz_$(n))

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(E) "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) -MMD -MP -c -o $@ $<

define kh_fuzz_link
$(BUILD)/fuzz/fuzz_$(1): $(BUILD)/fuzz/obj/tests/fuzz/fuzz_$(1).o \
		$(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(FUZZ_SRC_$(1)))
	$$(E) "  FUZZLD  $$@"
	$$(Q)$$(FUZZ_CC) $$(FUZZ_FLAGS) -o $$@ $$^ $$(DEP_LIBS) $$(CURL_LIBS) \
	    $$(FUZZ_LIBS_$(1)) -ldl -lpthread
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call kh_fuzz_link,$(n))))

fuzz: $(FUZZ_BINS)
	$(Q)for n in $(FUZZ_NAMES); do \
	    mkdir -p $(BUILD)/fuzz/work/$$n; \
	    echo "  FUZZ    $$n ($(FUZZ_SECONDS)s)"; \
	    $(BUILD)/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
	        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	        $$( [ -f tests/fuzz/$$n.dict ] && echo -dict=tests/fuzz/$$n.dict ) \
	        -artifact_prefix=$(BUILD)/fuzz/crash-$$n- \
	        $(BUILD)/fuzz/work/$$n tests/fuzz/corpus/$$n || exit 1; \
	done

CHECK_TARGETS += $(FUZZ_BINS)
