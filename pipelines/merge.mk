# merge.mk: model merging without training on Fashion-MNIST. Two small CNNs
# are trained from different seeds on disjoint halves of the classes (0-4 and
# 5-9); perm-align merges them into one model that predicts all ten classes,
# by plain averaging and by MuDSC (weight and activation similarity, zip),
# and net-eval scores each on the whole test set.
#
#   make -f pipelines/merge.mk OUT=demo-out        (what `make demo` runs)
#   make -f pipelines/merge.mk OUT=out ARCH="resnet20 --width 4" EPOCHS=2
#
# Results: $(OUT)/merge.txt. Every step is one netsmith program.

BIN     ?= bin
OUT     ?= demo-out
Q       ?= -q
TRAIN   ?= $(OUT)/fashion-train.tns
TEST    ?= $(OUT)/fashion-test.tns
ARCH    ?= vgg --depth 4 --width 2
EPOCHS  ?= 3
LIMIT   ?= 12000
STATS   ?= 2000
TRAIN_FLAGS ?= --lr 0.05 --batch 128

M := $(OUT)/merge

.PHONY: all
.SECONDARY:
all: $(OUT)/merge.txt

$(M):
	mkdir -p $@

# the two tasks: the first LIMIT/2 training images of each half, relabelled 0-4
$(M)/train-a.tns: $(TRAIN) | $(M)
	$(BIN)/img-select $(Q) -c 0-4 -n $$(($(LIMIT) / 2)) -o $@ $<
$(M)/train-b.tns: $(TRAIN) | $(M)
	$(BIN)/img-select $(Q) -c 5-9 -n $$(($(LIMIT) / 2)) -o $@ $<
# images of all classes for the activation statistics and the BatchNorm reset
$(M)/stats.tns: $(TRAIN) | $(M)
	$(BIN)/img-select $(Q) -c 0-9 -n $(STATS) -o $@ $<

$(M)/model-a.tns: $(M)/train-a.tns
	$(BIN)/net-init --arch $(ARCH) --like $< --seed 1 -o $@.init
	$(BIN)/net-train $(Q) --model $@.init --epochs $(EPOCHS) $(TRAIN_FLAGS) --seed 1 -o $@ $<
$(M)/model-b.tns: $(M)/train-b.tns
	$(BIN)/net-init --arch $(ARCH) --like $< --seed 2 -o $@.init
	$(BIN)/net-train $(Q) --model $@.init --epochs $(EPOCHS) $(TRAIN_FLAGS) --seed 2 -o $@ $<

# merged models: the heads are concatenated, so each predicts all ten classes
$(M)/merged-%.tns: $(M)/model-a.tns $(M)/model-b.tns $(M)/stats.tns
	$(BIN)/perm-align $(Q) --method $* --data $(M)/stats.tns -o $@ $(M)/model-a.tns $(M)/model-b.tns \
	    > $(M)/report-$*.tsv
$(M)/eval-%.txt: $(M)/merged-%.tns $(TEST)
	$(BIN)/net-eval -q -m $< $(TEST) > $@
$(M)/eval-a.txt: $(M)/model-a.tns $(TEST)
	$(BIN)/img-select $(Q) -c 0-4 $(TEST) | $(BIN)/net-eval -q -m $< - > $@
$(M)/eval-b.txt: $(M)/model-b.tns $(TEST)
	$(BIN)/img-select $(Q) -c 5-9 $(TEST) | $(BIN)/net-eval -q -m $< - > $@

METHODS := average mudsc-align mudsc-zip
$(OUT)/merge.txt: $(M)/eval-a.txt $(M)/eval-b.txt $(foreach m,$(METHODS),$(M)/eval-$(m).txt)
	@{ acc() { awk -F '\t' '$$1 == "accuracy" {printf "%.2f%%", 100 * $$2}' "$$1"; }; \
	  echo "# merging two $(ARCH) models trained on Fashion-MNIST classes 0-4 and 5-9, without training:"; \
	  echo "model A on its own 5 classes  $$(acc $(M)/eval-a.txt)"; \
	  echo "model B on its own 5 classes  $$(acc $(M)/eval-b.txt)"; \
	  for m in $(METHODS); do printf '%-29s %s\n' "merged, $$m, all 10" "$$(acc $(M)/eval-$$m.txt)"; done; \
	} > $@
