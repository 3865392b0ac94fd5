# prune.mk: PruningBench on Fashion-MNIST. A base model is trained; every
# criterion prunes it to each speed-up (global threshold, 10% group-wise
# protection); each regulariser pairing first trains the base sparse (net-train
# --reg) and then prunes it with its criterion; every pruned model is
# fine-tuned and evaluated, and the leaderboard ranks them per speed-up:
# accuracy after fine-tuning, its change from the base, the parameters kept,
# the seconds per pruning step spent on importance, the regulariser's seconds.
#
#   make -f pipelines/prune.mk                     the small version
#   make -f pipelines/prune.mk OUT=prune-full ARCH=resnet20 LIMIT=60000 \
#        TEST_LIMIT=10000 EPOCHS=30 SPARSE_EPOCHS=10 FT_EPOCHS=10 STEPS=8
#
# Results: $(OUT)/prune.txt. Every step is one netsmith program. Timings are
# wall-clock seconds on whatever else the machine is running. The small version
# (the defaults) takes 14.5 s wall (24 s CPU) on a quiet 2-core machine, and
# took 25m52s wall under heavy load from other work (bench/RESULTS.md); make
# demo runs it. Too little training breaks it: 1000 images x 2 epochs
# left a base at 15% test accuracy (batch-norm statistics unsettled).

BIN        ?= bin
OUT        ?= prune-out
Q          ?= -q
F          ?= /usr/share/datasets/fashion-mnist
CLASSES    ?= examples/fashion-mnist.classes
ARCH       ?= vgg --depth 4 --width 0.5
LIMIT      ?= 4000
TEST_LIMIT ?= 1000
EPOCHS     ?= 3
SPARSE_EPOCHS ?= 1
FT_EPOCHS  ?= 1
SAMPLES    ?= 128
STEPS      ?= 1
PROTECT    ?= 0.1
SPEEDUPS   ?= 2 4 8
CRITERIA   ?= random l1 l2 bn-scale fpgm lamp taylor obd-hessian obd-c hrank
PAIRINGS   ?= l2+group-lasso l2+group-norm l2+growing-reg bn-scale+bn-scale
TRAIN_FLAGS ?= --lr 0.05 --batch 64
SPARSE_FLAGS ?= --lr 0.01 --batch 64
FT_FLAGS   ?= --lr 0.01 --batch 64

P := $(OUT)/prune
METHODS := $(CRITERIA) $(PAIRINGS)

.PHONY: all
.SECONDARY:
all: $(OUT)/prune.txt

$(P):
	mkdir -p $@

$(P)/train.tns: | $(P)
	$(BIN)/img-read $(Q) --classes $(CLASSES) $(F)/train-images-idx3-ubyte.gz | \
	    $(BIN)/img-select $(Q) -c 0-9 -n $(LIMIT) -o $@ -
$(P)/test.tns: | $(P)
	$(BIN)/img-read $(Q) --classes $(CLASSES) $(F)/t10k-images-idx3-ubyte.gz | \
	    $(BIN)/img-select $(Q) -c 0-9 -n $(TEST_LIMIT) -o $@ -

$(P)/base.tns: $(P)/train.tns
	$(BIN)/net-init --arch $(ARCH) --like $< --seed 1 -o $@.init
	$(BIN)/net-train $(Q) -m $@.init -e $(EPOCHS) $(TRAIN_FLAGS) --seed 1 -o $@ $<
$(P)/eval-base.txt: $(P)/base.tns $(P)/test.tns
	$(BIN)/net-eval -q -m $< $(P)/test.tns > $@

# sparse training from the base, one model per regulariser
$(P)/sparse-%.tns: $(P)/base.tns $(P)/train.tns
	$(BIN)/net-train $(Q) -m $< -e $(SPARSE_EPOCHS) $(SPARSE_FLAGS) --reg $* --seed 2 -o $@ $(P)/train.tns

# one method (criterion, or criterion+regulariser) at one speed-up:
# $(1) method, $(2) criterion, $(3) model pruned, $(4) speed-up
define METHOD_RULES
$(P)/pruned-$(1)-$(4).tns: $(3) $(P)/train.tns
	$(BIN)/net-prune $(Q) -m $(3) -c $(2) -x $(4) -s $(STEPS) -p $(PROTECT) -n $(SAMPLES) \
	    -o $$@ $(P)/train.tns > $(P)/pruned-$(1)-$(4).txt
$(P)/tuned-$(1)-$(4).tns: $(P)/pruned-$(1)-$(4).tns $(P)/train.tns
	$(BIN)/net-train $(Q) -m $$< -e $(FT_EPOCHS) $(FT_FLAGS) --seed 3 -o $$@ $(P)/train.tns
$(P)/eval-$(1)-$(4).txt: $(P)/tuned-$(1)-$(4).tns $(P)/test.tns
	$(BIN)/net-eval -q -m $$< $(P)/test.tns > $$@
endef
$(foreach x,$(SPEEDUPS),$(foreach c,$(CRITERIA),\
    $(eval $(call METHOD_RULES,$(c),$(c),$(P)/base.tns,$(x)))))
$(foreach x,$(SPEEDUPS),$(foreach m,$(PAIRINGS),\
    $(eval $(call METHOD_RULES,$(m),$(word 1,$(subst +, ,$(m))),$(P)/sparse-$(word 2,$(subst +, ,$(m))).tns,$(x)))))

EVALS := $(foreach x,$(SPEEDUPS),$(foreach m,$(METHODS),$(P)/eval-$(m)-$(x).txt))

# The leaderboard: per speed-up, methods ranked by accuracy after fine-tuning.
$(OUT)/prune.txt: $(P)/eval-base.txt $(EVALS)
	@{ acc() { awk -F '\t' '$$1 == "accuracy" {printf "%.2f", 100 * $$2}' "$$1"; }; \
	  field() { awk -F '\t' -v k="$$1" '$$1 == k {print $$2}' "$$2"; }; \
	  base=$$(acc $(P)/eval-base.txt); \
	  echo "# PruningBench on Fashion-MNIST ($(LIMIT) training, $(TEST_LIMIT) test images): $(ARCH),"; \
	  echo "# base $(EPOCHS) epochs, sparse $(SPARSE_EPOCHS), fine-tune $(FT_EPOCHS); global, protect $(PROTECT), $(STEPS) step(s)"; \
	  for x in $(SPEEDUPS); do \
	    echo; printf '%-4s %-22s %6s %7s %7s %7s %8s %9s %8s\n' rank "method @ $${x}x" base pruned delta speedup params% step_s reg_s; \
	    for m in $(METHODS); do \
	      r=$(P)/pruned-$$m-$$x.txt; reg=$${m#*+}; rs=-; \
	      [ "$$reg" != "$$m" ] && rs=$$($(BIN)/tns-info $(P)/sparse-$$reg.tns | grep -o 'train.reg_seconds=[0-9.e+-]*' | cut -d= -f2 | head -1) && rs=$$(printf '%.3f' $$rs); \
	      printf '%s %s %s %s %s %s\n' "$$(acc $(P)/eval-$$m-$$x.txt)" "$$m" "$$(field speed_up $$r)" \
	        "$$(field params_kept $$r)" "$$(field importance_seconds $$r)" "$$rs"; \
	    done | sort -k1,1 -g -r | \
	    awk -v base=$$base -v steps=$(STEPS) '{printf "%-4d %-22s %6.2f %7.2f %+7.2f %7.2f %8.1f %9.3f %8s\n", NR, $$2, base, $$1, $$1 - base, $$3, 100 * $$4, $$5 / steps, $$6}'; \
	  done; \
	} > $@
	@cat $@
