# cct.mk: CCT-Net (comparison knowledge translation) on Fashion-MNIST split
# 5/5: a comparison classifier G learns "same class or not" from pairs of the
# labelled source classes 0-4, the adversarial stage translates it to the
# unlabelled target classes 5-9 against a matching discriminator D, and
# cct-classify scores both G alone and CCT-Net on target test images, with K
# representatives per target class.
#
#   make -f pipelines/cct.mk OUT=demo-out        (what `make demo` runs, < 1 min)
#   make -f pipelines/cct.mk OUT=out PER_CLASS=1000 PAIRS=4000 PRE=4 ADV=2
#
# Results: $(OUT)/cct.txt. Every step is one netsmith program.

BIN       ?= bin
OUT       ?= demo-out
Q         ?= -q
TRAIN     ?= $(OUT)/fashion-train.tns
TEST      ?= $(OUT)/fashion-test.tns
PER_CLASS ?= 200
TEST_PER_CLASS ?= 100
PAIRS     ?= 1500
PRE       ?= 3
ADV       ?= 1
K         ?= 5
SEED      ?= 1

C := $(OUT)/cct

.PHONY: all
.SECONDARY:
all: $(OUT)/cct.txt

$(C):
	mkdir -p $@

$(C)/source.tns: $(TRAIN) | $(C)
	$(BIN)/img-select $(Q) -c 0-4 -p $(PER_CLASS) -o $@ $<
$(C)/target.tns: $(TRAIN) | $(C)
	$(BIN)/img-select $(Q) -c 5-9 -p $(PER_CLASS) -o $@ $<
$(C)/query.tns: $(TEST) | $(C)
	$(BIN)/img-select $(Q) -c 5-9 -p $(TEST_PER_CLASS) -o $@ $<

# G alone: pretrained on source pairs only
$(C)/G.tns: $(C)/source.tns $(C)/target.tns
	$(BIN)/cct-train $(Q) --seed $(SEED) --pre-epochs $(PRE) --adv-epochs 0 --pairs $(PAIRS) -o $@ $^
# CCT-Net: the adversarial stage from G, on the unlabelled target images
$(C)/cct.tns: $(C)/G.tns $(C)/source.tns $(C)/target.tns
	$(BIN)/cct-train $(Q) --seed $(SEED) --g-init $< --adv-epochs $(ADV) --pairs $(PAIRS) \
	    --d-output $(C)/D.tns -o $@ $(C)/source.tns $(C)/target.tns

$(C)/%.score: $(C)/%.tns $(C)/target.tns $(C)/query.tns
	$(BIN)/cct-classify $(Q) -m $< -r $(C)/target.tns -K $(K) $(C)/query.tns > $@

$(OUT)/cct.txt: $(C)/G.score $(C)/cct.score
	{ echo "# CCT-Net, Fashion-MNIST: source classes 0-4 labelled, target 5-9 unlabelled ($(PER_CLASS) images each);"; \
	  echo "# accuracy on $(TEST_PER_CLASS) test images per target class, $(K) representatives per class:"; \
	  awk '$$1 == "accuracy" {printf "G alone (no adversarial stage)  %.1f%%\n", 100 * $$2}' $(C)/G.score; \
	  awk '$$1 == "accuracy" {printf "CCT-Net                         %.1f%%\n", 100 * $$2}' $(C)/cct.score; } > $@
