# condense.mk: graph condensation on a graph built from Fashion-MNIST. The
# images become a k-nearest-neighbour graph (graph-knn), a GCN trains on it
# with 20 labels per class, then SimGC (sgc-condense) shrinks the graph to a
# few hundred synthetic nodes and a GCN trained on those alone is tested on
# the whole graph again.
#
#   make -f pipelines/condense.mk OUT=demo-out        (what `make demo` runs)
#   make -f pipelines/condense.mk OUT=out IMAGES=10000 RATIO=1 ITERS=1500
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
RATIO   ?= 0.5
ITERS   ?= 600
SEED    ?= 1
# SimGC's evaluation GCN (hidden 1024, no activation, lr 0.001), shortened
JUDGE   ?= --act none --dropout 0 --wd 0 --lr 0.001 --hidden 256 --epochs 1000 --lr-drop 0 --eval-every 100

TEST_IDX := $(DATA)/t10k-images-idx3-ubyte.gz
G        := $(OUT)/fmnist-knn.tns
SETTINGS := $(OUT)/condense-settings.txt

.PHONY: all FORCE
all: $(OUT)/condense.txt

$(OUT):
	mkdir -p $@

$(SETTINGS): FORCE | $(OUT)
	@echo '$(IMAGES) $(K) $(RATIO) $(ITERS) $(SEED) $(JUDGE)' | cmp -s - $@ || \
	    echo '$(IMAGES) $(K) $(RATIO) $(ITERS) $(SEED) $(JUDGE)' > $@

# IDX -> images -> a kNN graph (cosine, symmetrised) with 20 labelled nodes per
# class, 500 for validation and the rest for testing
$(G): $(TEST_IDX) $(CLASSES) $(SETTINGS)
	$(BIN)/img-read $(Q) --classes $(CLASSES) $(TEST_IDX) | \
	    $(BIN)/graph-knn $(Q) -k $(K) --limit $(IMAGES) --train-per-class 20 --val 500 \
	        --test $$(($(IMAGES) - 700)) --seed $(SEED) -o $@

# whole graph: a GCN and an MLP (the graph's worth), trained on the 200 labels
$(OUT)/knn-gcn.txt: $(G)
	$(BIN)/gnn-train -q --epochs 200 --seed $(SEED) $< > $@
$(OUT)/knn-mlp.txt: $(G)
	$(BIN)/gnn-train -q -m mlp --epochs 200 --seed $(SEED) $< > $@

# the condensed graph, then a GCN trained on it alone, tested on the whole graph
$(OUT)/knn-condensed.tns: $(G)
	$(BIN)/sgc-condense $(Q) -r $(RATIO) -T $(ITERS) --lr-feat 0.05 --lr-adj 0.01 --val-every 200 --val-epochs 500 \
	    --teacher-hidden 256 --seed $(SEED) -o $@ $< > $(OUT)/condense-report.txt
$(OUT)/knn-condensed-gcn.txt: $(OUT)/knn-condensed.tns $(G)
	$(BIN)/gnn-train -q --eval-graph $(G) $(JUDGE) --seed $(SEED) $< > $@

$(OUT)/condense.txt: $(OUT)/knn-gcn.txt $(OUT)/knn-mlp.txt $(OUT)/knn-condensed-gcn.txt
	@{ n=$$(awk -F '\t' '$$1 == "original_nodes" {print $$2}' $(OUT)/condense-report.txt); \
	  c=$$(awk -F '\t' '$$1 == "nodes" {print $$2}' $(OUT)/condense-report.txt); \
	  acc() { awk -F '\t' '$$1 == "test_acc" {printf "%.2f%%", 100 * $$2}' "$$1"; }; \
	  echo "# Fashion-MNIST kNN graph, $$n nodes, 20 labels per class; GCN test accuracy:"; \
	  echo "whole graph, GCN            $$(acc $(OUT)/knn-gcn.txt)"; \
	  echo "whole graph, MLP (no graph) $$(acc $(OUT)/knn-mlp.txt)"; \
	  echo "SimGC, $$c condensed nodes   $$(acc $(OUT)/knn-condensed-gcn.txt)"; \
	  echo "condensation: $$(awk -F '\t' '$$1 ~ /_seconds$$/ {s += $$2} END {printf "%.1f s", s}' $(OUT)/condense-report.txt)"; \
	} > $@
