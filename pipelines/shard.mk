# shard.mk: one job cut into N shards that run side by side, merged back in
# order. Fashion-MNIST's test set is read in N shards (img-read --shard I/N),
# each shard is evaluated (net-eval --shard) and embedded (probe-embed) on its
# own, and tns-cat --by-id merges the outputs; the merged streams are compared
# byte for byte with the unsharded runs.
#
#   make -f pipelines/shard.mk -j4 OUT=out N=4          (make runs the shards)
#   make -f pipelines/shard.mk OUT=out parallel N=4     (GNU parallel runs them)
#
# GNU parallel is Debian's `parallel` (apt-get install parallel). The command
# the `parallel` target runs, one line per step:
#
#   seq 0 $((N-1)) | parallel img-read -q --shard {}/N ... -o out/shard/img-{}.tns IMAGES
#   tns-cat --by-id -o out/shard/test.tns out/shard/img-*.tns
#
# The shards could as well run on other machines (ssh, Spark's pipe()): a
# shard depends only on I/N and the input, never on the other shards.
# Results: $(OUT)/shard/check.txt.

BIN     ?= bin
OUT     ?= demo-out
Q       ?= -q
N       ?= 4
F       ?= /usr/share/datasets/fashion-mnist
IMAGES  ?= $(F)/t10k-images-idx3-ubyte.gz
CLASSES ?= examples/fashion-mnist.classes
ARCH    ?= mlp
# one thread per shard: the shards are the parallelism
export NETSMITH_THREADS ?= 1

S := $(OUT)/shard
SHARDS := $(shell seq 0 $$(($(N) - 1)))
READ = $(BIN)/img-read $(Q) --classes $(CLASSES)

.PHONY: all parallel
.SECONDARY:
all: $(S)/check.txt

$(S):
	mkdir -p $@

# the unsharded runs, for the comparison
$(S)/whole.tns: | $(S)
	$(READ) -o $@ $(IMAGES)
$(S)/model.tns: $(S)/whole.tns
	$(BIN)/net-init --arch $(ARCH) --like $< -o $@
$(S)/whole-logits.tns: $(S)/whole.tns $(S)/model.tns
	$(BIN)/net-eval $(Q) --model $(S)/model.tns --logits $@ $< > $(S)/whole-eval.txt
$(S)/whole-feat.tns: $(S)/whole.tns $(S)/model.tns
	$(BIN)/probe-embed $(Q) --model $(S)/model.tns -o $@ $<

# shard I of N: read, evaluate, embed (each step only its own samples)
$(S)/img-%.tns: | $(S)
	$(READ) --shard $*/$(N) -o $@ $(IMAGES)
$(S)/logits-%.tns: $(S)/img-%.tns $(S)/model.tns
	$(BIN)/net-eval $(Q) --model $(S)/model.tns --shard $*/$(N) --logits $@ $< > $(S)/eval-$*.txt
$(S)/feat-%.tns: $(S)/img-%.tns $(S)/model.tns
	$(BIN)/probe-embed $(Q) --model $(S)/model.tns --shard $*/$(N) -o $@ $<

# the merges, in order of sample id
$(S)/test.tns: $(SHARDS:%=$(S)/img-%.tns)
	$(BIN)/tns-cat --by-id -o $@ $^
$(S)/logits.tns: $(SHARDS:%=$(S)/logits-%.tns)
	$(BIN)/tns-cat --by-id -o $@ $^
$(S)/feat.tns: $(SHARDS:%=$(S)/feat-%.tns)
	$(BIN)/tns-cat --by-id -o $@ $^

$(S)/check.txt: $(S)/test.tns $(S)/logits.tns $(S)/feat.tns $(S)/whole.tns $(S)/whole-logits.tns $(S)/whole-feat.tns
	{ cmp $(S)/test.tns $(S)/whole.tns && cmp $(S)/logits.tns $(S)/whole-logits.tns && \
	  cmp $(S)/feat.tns $(S)/whole-feat.tns && \
	  echo "$(N) shards merged: images, logits and features equal the unsharded streams byte for byte"; } > $@.tmp
	mv $@.tmp $@
	cat $@

# The same shards run by GNU parallel instead of make.
parallel: $(S)/whole-logits.tns $(S)/whole-feat.tns
	@command -v parallel > /dev/null || { echo "shard.mk: GNU parallel is missing: apt-get install parallel" >&2; exit 1; }
	seq 0 $$(($(N) - 1)) | parallel $(READ) --shard {}/$(N) -o $(S)/img-{}.tns $(IMAGES)
	seq 0 $$(($(N) - 1)) | parallel $(BIN)/net-eval $(Q) --model $(S)/model.tns --shard {}/$(N) \
	    --logits $(S)/logits-{}.tns $(S)/img-{}.tns '>' $(S)/eval-{}.txt
	seq 0 $$(($(N) - 1)) | parallel $(BIN)/probe-embed $(Q) --model $(S)/model.tns --shard {}/$(N) \
	    -o $(S)/feat-{}.tns $(S)/img-{}.tns
	$(BIN)/tns-cat --by-id -o $(S)/test.tns $(SHARDS:%=$(S)/img-%.tns)
	$(BIN)/tns-cat --by-id -o $(S)/logits.tns $(SHARDS:%=$(S)/logits-%.tns)
	$(BIN)/tns-cat --by-id -o $(S)/feat.tns $(SHARDS:%=$(S)/feat-%.tns)
	cmp $(S)/test.tns $(S)/whole.tns && cmp $(S)/logits.tns $(S)/whole-logits.tns && \
	    cmp $(S)/feat.tns $(S)/whole-feat.tns && \
	    echo "$(N) shards run by GNU parallel, merged: equal the unsharded streams byte for byte"
