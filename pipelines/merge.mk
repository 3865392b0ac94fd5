# merge.mk: model merging without training on Fashion-MNIST, bench/mudsc.sh's
# table in small. Two small CNNs are trained from different seeds on
# disjoint halves of the classes (A: 0-4, B: 5-9); perm-align merges them
# into one model that predicts all ten classes by every method of the table:
# weight averaging, weight matching (Git Re-Basin), activation matching,
# ZipIt! (all layers, and partial: zipped up to PARTIAL, the later layers
# kept per model), MuDSC-align and MuDSC-zip; and the ensemble of the two
# (both models whole, logits side by side; and with each model's logits
# standardised). Each is scored on the whole test set as the bench scores it
# (pipelines/merge-score.sh): joint (argmax over the 10 classes), task A and
# task B (argmax within the task's classes on its own images) and their mean;
# ZipIt!'s published figures beside.
#
#   make -f pipelines/merge.mk OUT=demo-out        (what `make demo` runs)
#   make -f pipelines/merge.mk OUT=out ARCH="resnet20 --width 4" EPOCHS=2 PARTIAL=layer2.2.relu2
#
# Results: $(OUT)/merge.txt. Every step is one netsmith program; the scores
# are awk (merge-score.sh).

BIN     ?= bin
OUT     ?= demo-out
Q       ?= -q
TRAIN   ?= $(OUT)/fashion-train.tns
TEST    ?= $(OUT)/fashion-test.tns
ARCH    ?= vgg --depth 4 --width 2
EPOCHS  ?= 3
LIMIT   ?= 12000
STATS   ?= 2000
# the partial zip merges up to this node (3 of vgg --depth 4's 5 layers; ZipIt! zips 13/20)
PARTIAL ?= features.relu2
TRAIN_FLAGS ?= --lr 0.05 --batch 128

M     := $(OUT)/merge
SCORE := sh $(dir $(lastword $(MAKEFILE_LIST)))merge-score.sh

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

# each task's test images (relabelled 0-4), for the task models alone
$(M)/test-a.tns: $(TEST) | $(M)
	$(BIN)/img-select $(Q) -c 0-4 -o $@ $<
$(M)/test-b.tns: $(TEST) | $(M)
	$(BIN)/img-select $(Q) -c 5-9 -o $@ $<

# merged models: the heads are concatenated, so each predicts all ten classes.
# MERGES are the table's rows in order, NAME_x their names (bench/mudsc.sh's),
# ARGS_x perm-align's options (--method x unless given).
MERGES := average weight act zip partial mudsc-align mudsc-zip ensemble
NAME_average     := W.avg
NAME_weight      := Weight matching
NAME_act         := Permute (act)
NAME_zip         := ZipIt! (all layers)
NAME_partial     := ZipIt! partial ($(PARTIAL))
NAME_mudsc-align := MuDSC-align
NAME_mudsc-zip   := MuDSC-zip
NAME_ensemble    := Ensemble
ARGS_partial     := --method zip --partial $(PARTIAL)
# the ensemble: both models whole, their logits side by side (a partial zip at the input)
ARGS_ensemble    := --method average --no-reset --partial input

$(M)/merged-%.tns: $(M)/model-a.tns $(M)/model-b.tns $(M)/stats.tns
	$(BIN)/perm-align $(Q) $(or $(ARGS_$*),--method $*) --data $(M)/stats.tns -o $@ \
	    $(M)/model-a.tns $(M)/model-b.tns > $(M)/report-$*.tsv

# "label logits..." lines of a model on a test set, then the table's scores
$(M)/logits-%.tsv: $(M)/merged-%.tns $(TEST)
	$(BIN)/net-eval -q -m $< --logits $@.tns $(TEST) > /dev/null
	$(BIN)/tns-tsv -l $@.tns > $@ && rm -f $@.tns
$(M)/logits-alone-%.tsv: $(M)/model-%.tns $(M)/test-%.tns
	$(BIN)/net-eval -q -m $< --logits $@.tns $(M)/test-$*.tns > /dev/null
	$(BIN)/tns-tsv -l $@.tns > $@ && rm -f $@.tns
$(M)/score-%.txt: $(M)/logits-%.tsv
	$(SCORE) < $< > $@
$(M)/score-ensemble-standardised.txt: $(M)/logits-ensemble.tsv
	$(SCORE) --standardise < $< > $@
$(M)/score-alone-a.txt: $(M)/logits-alone-a.tsv $(M)/logits-alone-b.tsv
	$(SCORE) --alone a $$(wc -l < $(M)/logits-alone-b.tsv) < $< > $@
$(M)/score-alone-b.txt: $(M)/logits-alone-b.tsv $(M)/logits-alone-a.tsv
	$(SCORE) --alone b $$(wc -l < $(M)/logits-alone-a.tsv) < $< > $@

# the table: a row per score file, named as in bench/mudsc.sh
ROWS := row alone-a 'Model A alone'; row alone-b 'Model B alone'; \
        $(foreach m,$(MERGES),row $(m) '$(NAME_$(m))';) \
        row ensemble-standardised 'Ensemble, logits standardised per model';
$(OUT)/merge.txt: $(M)/score-alone-a.txt $(M)/score-alone-b.txt $(foreach m,$(MERGES),$(M)/score-$(m).txt) \
                  $(M)/score-ensemble-standardised.txt
	@{ echo "# merging two $(ARCH) models trained on Fashion-MNIST classes 0-4 (A) and 5-9 (B), without training;"; \
	  echo "# test accuracy (%): joint = argmax over all 10 classes, task A/B = argmax within the task's 5"; \
	  echo "# classes on its own images, avg = their mean (bench/mudsc.sh's table in small, one seed);"; \
	  echo "# beside: ZipIt!'s published joint (avg), CIFAR-10 5+5 with resnet20x4 (its Table 1a):"; \
	  line() { printf '%-40s %6s %6s %6s %6s  %s\n' "$$@"; }; \
	  row() { line "$$2" $$(cat $(M)/score-$$1.txt) "$$($(SCORE) --published "$$2")"; }; \
	  line method joint "task A" "task B" avg "ZipIt! (paper)"; \
	  $(ROWS) \
	} > $@
