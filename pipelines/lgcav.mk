# lgcav.mk: concept activation vectors on Fashion-MNIST, from the streams and
# the model that pipelines/fashion.mk makes. A concept bank labels every
# image with class-level and pixel-level concepts, a small CLIP-style model
# learns images and captions, then for every concept the original CAV (10
# labelled positives and negatives) and LG-CAV (guided by the VLM) are fitted
# on the model's backbone features and judged on held-out test images.
# Then ASR: one LG-CAV per class ("a photo of k, not k'") weights the
# training samples, and the head is fine-tuned with and without the weights.
#
#   make -f pipelines/lgcav.mk OUT=demo-out          (what `make demo` runs)
#   make -f pipelines/lgcav.mk OUT=out POOL=40 VLM_EPOCHS=3 VLM_ARCH="vgg --depth 4 --width 2"
#
# Results: $(OUT)/lgcav.txt. Every step is one netsmith program.

BIN        ?= bin
OUT        ?= demo-out
Q          ?= -q
ATTRS      ?= examples/fashion-mnist.attributes.tsv
MODEL      ?= $(OUT)/model.tns
TRAIN      ?= $(OUT)/fashion-train.tns
TEST       ?= $(OUT)/fashion-test.tns
VLM_ARCH   ?= vgg --depth 2 --width 1
VLM_EPOCHS ?= 1
POOL       ?= 20
HELDOUT    ?= 8
PROBES     ?= 500
SEED       ?= 0
# cav-fit's products are small: one thread beats two on a busy machine
FIT        := NETSMITH_THREADS=1 $(BIN)/cav-fit

L := $(OUT)/lgcav

.PHONY: all
all: $(OUT)/lgcav.txt

$(L):
	mkdir -p $@

# concepts of every training and test image (test thresholds from the training set)
$(L)/concepts-train.tns: $(TRAIN) $(ATTRS) | $(L)
	$(BIN)/concept-bank $(Q) -a $(ATTRS) -o $@ $(TRAIN)
$(L)/concepts-test.tns: $(TEST) $(L)/concepts-train.tns $(ATTRS)
	$(BIN)/concept-bank $(Q) -a $(ATTRS) -t $(L)/concepts-train.tns -o $@ $(TEST)

# a small CLIP: captions drawn from the concept bank, zero-shot accuracy and
# concept AUCs on the test set in vlm-eval.tsv
$(L)/vlm.tns: $(TRAIN) $(L)/concepts-train.tns $(TEST) $(L)/concepts-test.tns
	$(BIN)/vlm-train $(Q) --arch "$(VLM_ARCH)" -e $(VLM_EPOCHS) --seed 1 --concepts $(L)/concepts-train.tns \
	    --eval $(TEST) --eval-concepts $(L)/concepts-test.tns --report $(L)/vlm-eval.tsv -o $@ $(TRAIN)

# the probe pool (POOL batches of training images) and the held-out images
$(L)/pool.tns: $(TRAIN) | $(L)
	$(BIN)/tns-cat --head $(POOL) -o $@ $<
$(L)/heldout.tns: $(TEST) | $(L)
	$(BIN)/tns-cat --head $(HELDOUT) -o $@ $<
$(L)/pool-c.tns: $(L)/pool.tns $(L)/concepts-train.tns $(ATTRS)
	$(BIN)/concept-bank $(Q) -a $(ATTRS) -t $(L)/concepts-train.tns -o $@ $<
$(L)/heldout-c.tns: $(L)/heldout.tns $(L)/concepts-train.tns $(ATTRS)
	$(BIN)/concept-bank $(Q) -a $(ATTRS) -t $(L)/concepts-train.tns -o $@ $<

# features: the model's backbone, the VLM's images, the VLM's concept texts
# (each averaged over the paper's 29 prompt templates)
$(L)/pool-f.tns: $(MODEL) $(L)/pool.tns
	$(BIN)/probe-embed $(Q) -m $(MODEL) -o $@ $(L)/pool.tns
$(L)/heldout-f.tns: $(MODEL) $(L)/heldout.tns
	$(BIN)/probe-embed $(Q) -m $(MODEL) -o $@ $(L)/heldout.tns
$(L)/pool-g.tns: $(L)/vlm.tns $(L)/pool.tns
	$(BIN)/probe-embed $(Q) --vlm $(L)/vlm.tns -o $@ $(L)/pool.tns
$(L)/texts.txt: $(ATTRS) | $(L)
	{ sed -n '1p' $(ATTRS) | cut -f2- | tr '\t' '\n'; printf '%s\n' bright dark patterned plain large small; } | \
	    awk '{d = $$0; gsub("-", " ", d); print $$0 "\t" d}' > $@
$(L)/texts.tns: $(L)/vlm.tns $(L)/texts.txt
	$(BIN)/probe-embed $(Q) --vlm $(L)/vlm.tns --texts $(L)/texts.txt -o $@

# the CAVs: the original (10 + 10 labelled images) and LG-CAV (GA, the same
# 10 + 10 for L_cls), then LG-CAV from the VLM alone (no labels at all)
EVAL := -C $(L)/pool-c.tns -e $(L)/heldout-f.tns -E $(L)/heldout-c.tns -a $(ATTRS) --seed $(SEED)
LG   := -g $(L)/pool-g.tns -t $(L)/texts.tns -k $(PROBES)
$(L)/cav.tsv: $(L)/pool-f.tns $(L)/heldout-f.tns $(L)/pool-c.tns $(L)/heldout-c.tns
	$(FIT) -q --method cav $(EVAL) $(L)/pool-f.tns > $@
$(L)/lgcav.tsv: $(L)/pool-f.tns $(L)/heldout-f.tns $(L)/pool-c.tns $(L)/heldout-c.tns $(L)/pool-g.tns $(L)/texts.tns
	$(FIT) -q $(EVAL) $(LG) -M ga -o $(L)/cavs.tns $(L)/pool-f.tns > $@
$(L)/lgcav-vlm-only.tsv: $(L)/pool-f.tns $(L)/heldout-f.tns $(L)/pool-c.tns $(L)/heldout-c.tns $(L)/pool-g.tns $(L)/texts.tns
	$(FIT) -q $(EVAL) $(LG) -M ga --positives 0 $(L)/pool-f.tns > $@

# --- ASR: weight the training set by each class's LG-CAV, fine-tune the head
A         := $(OUT)/asr
ASR_FLAGS ?= --lr 1e-3 --epochs 20 --seed $(SEED)

$(A):
	mkdir -p $@
# backbone features (the head's input) of the whole training and test sets
$(A)/train-f.tns: $(MODEL) $(TRAIN) | $(A)
	$(BIN)/probe-embed $(Q) -m $(MODEL) -o $@ $(TRAIN)
$(A)/test-f.tns: $(MODEL) $(TEST) | $(A)
	$(BIN)/probe-embed $(Q) -m $(MODEL) -o $@ $(TEST)
# "a photo of k, not k2", k2 the class the model most often takes k for
$(A)/classes.txt: $(A)/train-f.tns
	$(BIN)/asr-reweight --describe $< > $@.tmp && mv $@.tmp $@
$(A)/texts.tns: $(L)/vlm.tns $(A)/classes.txt
	$(BIN)/probe-embed $(Q) --vlm $(L)/vlm.tns --texts $(A)/classes.txt -o $@
# one LG-CAV per class from the VLM alone (no positives), as the paper's ASR
$(A)/cavs.tns: $(L)/pool-f.tns $(L)/pool-g.tns $(A)/texts.tns
	$(FIT) -q -g $(L)/pool-g.tns -t $(A)/texts.tns -k $(PROBES) --seed $(SEED) -o $@ $(L)/pool-f.tns > $(A)/cav-fit.tsv
# ASR, and the control (uniform weights, the same budget, lr and seed)
$(A)/asr.tsv: $(MODEL) $(A)/train-f.tns $(A)/test-f.tns $(A)/cavs.tns $(A)/classes.txt
	$(BIN)/asr-reweight $(Q) -c $(A)/cavs.tns -d $(A)/classes.txt -m $(MODEL) -o $(A)/model-asr.tns \
	    -w $(A)/weights.tns -t $(A)/test-f.tns $(ASR_FLAGS) $(A)/train-f.tns > $@.tmp && mv $@.tmp $@
$(A)/asr-uniform.tsv: $(A)/train-f.tns $(A)/test-f.tns
	$(BIN)/asr-reweight $(Q) -u -t $(A)/test-f.tns $(ASR_FLAGS) $(A)/train-f.tns > $@.tmp && mv $@.tmp $@

# mean concept accuracy (column 7) and concept-to-class x100 (column 8)
MEANS = awk -F '\t' 'NR > 1 {a += $$7; n++; if ($$8 != "nan") {c += $$8; m++}} \
        END {printf "concept accuracy %.2f%%, concept-to-class %.2f\n", 100 * a / n, m ? c / m : 0}'
$(OUT)/lgcav.txt: $(L)/cav.tsv $(L)/lgcav.tsv $(L)/lgcav-vlm-only.tsv $(A)/asr.tsv $(A)/asr-uniform.tsv
	@{ echo "# concept vectors for $$(wc -l < $(L)/texts.txt) concepts of Fashion-MNIST, on $(MODEL)'s features:"; \
	  echo "VLM: zero-shot $$(awk -F '\t' '$$1 == "zero_shot_accuracy" {printf "%.2f%%", 100 * $$2}' $(L)/vlm-eval.tsv)," \
	       "mean concept AUC $$(awk -F '\t' '$$1 == "mean_auc" {printf "%.3f", $$2}' $(L)/vlm-eval.tsv)"; \
	  printf 'original CAV (10 + 10 labelled) %s' "$$($(MEANS) $(L)/cav.tsv)"; echo; \
	  printf 'LG-CAV +GA (the same labels)     %s' "$$($(MEANS) $(L)/lgcav.tsv)"; echo; \
	  printf 'LG-CAV +GA, no labels at all    %s' "$$($(MEANS) $(L)/lgcav-vlm-only.tsv)"; echo; \
	  test_acc() { awk -F '\t' -v c="$$2" '$$1 == "test" && $$2 == "all" {printf "%.2f", 100 * $$c}' "$$1"; }; \
	  echo "# ASR: the head fine-tuned with weights from each class's LG-CAV; control: the same fine-tuning"; \
	  echo "# with uniform weights (same budget, lr and seed); test accuracy (bench/asr.sh's columns):"; \
	  base=$$(test_acc $(A)/asr.tsv 5); asr=$$(test_acc $(A)/asr.tsv 6); control=$$(test_acc $(A)/asr-uniform.tsv 6); \
	  echo "base $$base%, ASR $$asr%, control (uniform) $$control%;" \
	       "ASR − base $$(awk -v a=$$asr -v b=$$base 'BEGIN {printf "%+.2f", a - b}')," \
	       "ASR − control $$(awk -v a=$$asr -v b=$$control 'BEGIN {printf "%+.2f", a - b}')"; \
	} > $@
