# condense.mk: graph condensation on a graph built from Fashion-MNIST,
# bench/simgc.sh's comparison in small. The images become a k-nearest-
# neighbour graph (graph-knn), a GCN and an MLP train on it with 20 labels per
# class, then SimGC (sgc-condense) shrinks the graph at each ratio of RATIOS to
# r x 20 synthetic nodes per class, and a random coreset of the same size
# (r x 20 of the labelled nodes per class and the edges among them,
# graph-coreset as in the bench) is drawn beside it. A GCN
# trained on each small graph alone (SimGC's judge) is tested on the whole
# graph again.
#
#   make -f pipelines/condense.mk OUT=demo-out        (what `make demo` runs)
#   make -f pipelines/condense.mk OUT=out IMAGES=10000 RATIOS="0.5 1" ITERS=1500
#
# The condensation uses the larger datasets' learning rates (lr-feat 0.05,
# lr-adj 0.01): Cora's (the defaults) need many more iterations here.
#
# Every step is one netsmith program; results land in $(OUT)/condense.txt.

BIN     ?= bin
OUT     ?= demo-out
DATA    ?= /usr/share/datasets/fashion-mnist
CLASSES ?= examples/fashion-mnist.classes
Q       ?= -q
IMAGES  ?= 10000
K       ?= 10
RATIOS  ?= 0.25 0.5
ITERS   ?= 600
SEED    ?= 1
# the whole-graph GCN and MLP
WHOLE   ?= --epochs 200
# sgc-condense's settings besides the ratio and the seed
CONDENSE ?= --lr-feat 0.05 --lr-adj 0.01 --val-every 200 --val-epochs 500 --teacher-hidden 256
# SimGC's evaluation GCN (hidden 1024, no activation, lr 0.001), shortened
JUDGE   ?= --act none --dropout 0 --wd 0 --lr 0.001 --hidden 256 --epochs 1000 --lr-drop 0 --eval-every 100

TEST_IDX := $(DATA)/t10k-images-idx3-ubyte.gz
G        := $(OUT)/fmnist-knn.tns
SETTINGS := $(OUT)/condense-settings.txt

.PHONY: all FORCE
.DELETE_ON_ERROR:
.SECONDARY:
all: $(OUT)/condense.txt

$(OUT):
	mkdir -p $@

$(SETTINGS): FORCE | $(OUT)
	@echo '$(IMAGES) $(K) $(RATIOS) $(ITERS) $(SEED) $(WHOLE) $(CONDENSE) $(JUDGE)' | cmp -s - $@ || \
	    echo '$(IMAGES) $(K) $(RATIOS) $(ITERS) $(SEED) $(WHOLE) $(CONDENSE) $(JUDGE)' > $@

# IDX -> images -> a kNN graph (cosine, symmetrised) with 20 labelled nodes per
# class, 500 for validation and the rest for testing
$(G): $(TEST_IDX) $(CLASSES) $(SETTINGS)
	$(BIN)/img-read $(Q) --classes $(CLASSES) $(TEST_IDX) | \
	    $(BIN)/graph-knn $(Q) -k $(K) --limit $(IMAGES) --train-per-class 20 --val 500 \
	        --test $$(($(IMAGES) - 700)) --seed $(SEED) -o $@

# whole graph: a GCN and an MLP (the graph's worth), trained on the 200 labels
$(OUT)/knn-gcn.txt: $(G)
	$(BIN)/gnn-train -q $(WHOLE) --seed $(SEED) $< > $@
$(OUT)/knn-mlp.txt: $(G)
	$(BIN)/gnn-train -q -m mlp $(WHOLE) --seed $(SEED) $< > $@

# at each ratio r: the condensed graph and the random coreset of the same
# size, then a GCN trained on each alone, tested on the whole graph
$(OUT)/knn-condensed-%.tns: $(G)
	$(BIN)/sgc-condense $(Q) -r $* -T $(ITERS) $(CONDENSE) --seed $(SEED) -o $@ $< > $(OUT)/condense-report-$*.txt
$(OUT)/knn-coreset-%.tns: $(G)
	$(BIN)/graph-coreset $(Q) -m random -r $* --seed $(SEED) -o $@ $<
$(OUT)/knn-%-gcn.txt: $(OUT)/knn-%.tns $(G)
	$(BIN)/gnn-train -q --eval-graph $(G) $(JUDGE) --seed $(SEED) $< > $@

SMALL := $(foreach r,$(RATIOS),$(OUT)/knn-condensed-$(r)-gcn.txt $(OUT)/knn-coreset-$(r)-gcn.txt)
$(OUT)/condense.txt: $(OUT)/knn-gcn.txt $(OUT)/knn-mlp.txt $(SMALL)
	@{ key() { awk -F '\t' -v k="$$1" '$$1 == k {print $$2}' "$$2"; }; \
	  acc() { awk -F '\t' '$$1 == "test_acc" {printf "%.2f", 100 * $$2}' "$$1"; }; \
	  n=$$(key original_nodes $(OUT)/condense-report-$(firstword $(RATIOS)).txt); \
	  echo "# Fashion-MNIST kNN graph, $$n nodes, 20 labels per class; test accuracy (%) on the whole graph."; \
	  echo "# Whole graph: a GCN and an MLP trained on it. At ratio r: a GCN trained alone (SimGC's judge) on a"; \
	  echo "# random coreset of r x 20 labelled nodes per class, or on SimGC's condensed graph of the same size"; \
	  echo "# (beside it SimGC's teacher, an MLP on the whole graph; the class means, the nearest-class-mean"; \
	  echo "# classifier on the propagated features, near which SimGC lands; and the condensation's time):"; \
	  echo "whole graph, GCN              $$(acc $(OUT)/knn-gcn.txt)"; \
	  echo "whole graph, MLP (no graph)   $$(acc $(OUT)/knn-mlp.txt)"; \
	  printf '%-5s %6s %6s %15s %8s %12s %7s %15s\n' r nodes share "random coreset" teacher "class means" SimGC "condensation s"; \
	  for r in $(RATIOS); do \
	    report=$(OUT)/condense-report-$$r.txt; c=$$(key nodes $$report); \
	    pct() { awk -v t="$$1" 'BEGIN {printf "%.2f", 100 * t}'; }; \
	    printf '%-5s %6s %6s %15s %8s %12s %7s %15s\n' $$r $$c "$$(awk -v c=$$c -v n=$$n 'BEGIN {printf "%.1f%%", 100 * c / n}')" \
	        "$$(acc $(OUT)/knn-coreset-$$r-gcn.txt)" "$$(pct $$(key teacher_test $$report))" "$$(pct $$(key class_mean_test $$report))" \
	        "$$(acc $(OUT)/knn-condensed-$$r-gcn.txt)" "$$(awk -F '\t' '$$1 ~ /_seconds$$/ {s += $$2} END {printf "%.1f", s}' $$report)"; \
	  done; \
	  echo "(published GCond and SFGC figures are for Cora: bench/RESULTS.md)"; \
	} > $@
