# prune.mk: PruningBench on Fashion-MNIST. A base model is trained once; every
# criterion prunes it to each speed-up (global threshold, 10% group-wise
# protection); each regulariser pairing first trains the base sparse (net-train
# --reg, once, on the fine-tuning images) and then prunes it with its
# criterion; every pruned model is
# fine-tuned and evaluated, once per seed (the seed drives the fine-tuning's
# shuffling and the seeded criteria: random, obd-c, thinet and cp's sampled
# locations). The leaderboard ranks the methods per speed-up by the mean
# accuracy after fine-tuning over the seeds (± the sample standard deviation
# when SEEDS has more than one), its change from the base, the parameters
# kept, the seconds per pruning step spent on importance, the regulariser's
# seconds; prune.svg plots accuracy against the speed-up reached per method.
#
#   make -f pipelines/prune.mk                     the small version
#   make -f pipelines/prune.mk OUT=prune-r20 ARCH="resnet20 --width 0.5" LIMIT=4000 \
#        EPOCHS=4 FT_LIMIT=1000 TEST_LIMIT=500 SAMPLES=64 SEEDS="1 2 3"   (bench/RESULTS.md: 10 min)
#   sh bench/prune_leaderboard.sh 1|2|3|r56       the full-size leaderboards, in stages
#
# Results: $(OUT)/prune.txt and $(OUT)/prune.svg. Every step is one netsmith
# program. Timings are wall-clock seconds on whatever else the machine is
# running. The small version (the defaults) took 14.5 s wall (24 s CPU) on a
# quiet 2-core machine before thinet and cp joined, and 25m52s wall under heavy
# load from other work (bench/RESULTS.md); make demo runs it. Too little
# training breaks it: 1000 images x 2 epochs left a base at 15% test accuracy
# (batch-norm statistics unsettled).

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
FT_LIMIT   ?= $(LIMIT)
SEEDS      ?= 1
SAMPLES    ?= 128
STEPS      ?= 1
PROTECT    ?= 0.1
SPEEDUPS   ?= 2 4 8
CRITERIA   ?= random l1 l2 bn-scale fpgm lamp taylor obd-hessian obd-c hrank thinet cp
PAIRINGS   ?= l2+group-lasso l2+group-norm l2+growing-reg bn-scale+bn-scale
TRAIN_FLAGS ?= --lr 0.05 --batch 64
SPARSE_FLAGS ?= --lr 0.01 --batch 64
FT_FLAGS   ?= --lr 0.01 --batch 64

P := $(OUT)/prune
METHODS := $(CRITERIA) $(PAIRINGS)

# Every file is named in a rule, so none is an intermediate that make would
# delete, and a missing one is made again: an evaluation of a seed, a method
# or a speed-up added later makes the table out of date (so no .SECONDARY,
# under which missing files were left alone).
.PHONY: all
all: $(OUT)/prune.txt $(OUT)/prune.svg

$(P):
	mkdir -p $@

$(P)/train.tns: | $(P)
	$(BIN)/img-read $(Q) --classes $(CLASSES) $(F)/train-images-idx3-ubyte.gz | \
	    $(BIN)/img-select $(Q) -c 0-9 -n $(LIMIT) -o $@ -
$(P)/test.tns: | $(P)
	$(BIN)/img-read $(Q) --classes $(CLASSES) $(F)/t10k-images-idx3-ubyte.gz | \
	    $(BIN)/img-select $(Q) -c 0-9 -n $(TEST_LIMIT) -o $@ -

$(P)/ft.tns: $(P)/train.tns
	$(BIN)/img-select $(Q) -c 0-9 -n $(FT_LIMIT) -o $@ $<

$(P)/base.tns: $(P)/train.tns
	$(BIN)/net-init --arch $(ARCH) --like $< --seed 1 -o $@.init
	$(BIN)/net-train $(Q) -m $@.init -e $(EPOCHS) $(TRAIN_FLAGS) --seed 1 -o $@ $<
$(P)/eval-base.txt: $(P)/base.tns $(P)/test.tns
	$(BIN)/net-eval -q -m $< $(P)/test.tns > $@

# sparse training from the base, one model per regulariser, on the images the
# fine-tuning reads (all of train.tns unless FT_LIMIT is smaller)
$(P)/sparse-%.tns: $(P)/base.tns $(P)/ft.tns
	$(BIN)/net-train $(Q) -m $< -e $(SPARSE_EPOCHS) $(SPARSE_FLAGS) --reg $* --seed 2 -o $@ $(P)/ft.tns

# one method (criterion, or criterion+regulariser) at one speed-up and seed:
# $(1) method, $(2) criterion, $(3) model pruned, $(4) speed-up, $(5) seed
define METHOD_RULES
$(P)/pruned-$(1)-$(4)-s$(5).tns: $(3) $(P)/train.tns
	$(BIN)/net-prune $(Q) -m $(3) -c $(2) -x $(4) -s $(STEPS) -p $(PROTECT) -n $(SAMPLES) --seed $(5) \
	    -o $$@ $(P)/train.tns > $(P)/pruned-$(1)-$(4)-s$(5).txt
$(P)/tuned-$(1)-$(4)-s$(5).tns: $(P)/pruned-$(1)-$(4)-s$(5).tns $(P)/ft.tns
	$(BIN)/net-train $(Q) -m $$< -e $(FT_EPOCHS) $(FT_FLAGS) --seed $$$$((3 + 100 * ($(5) - 1))) -o $$@ $(P)/ft.tns
$(P)/eval-$(1)-$(4)-s$(5).txt: $(P)/tuned-$(1)-$(4)-s$(5).tns $(P)/test.tns
	$(BIN)/net-eval -q -m $$< $(P)/test.tns > $$@
endef
$(foreach s,$(SEEDS),$(foreach x,$(SPEEDUPS),$(foreach c,$(CRITERIA),\
    $(eval $(call METHOD_RULES,$(c),$(c),$(P)/base.tns,$(x),$(s))))))
$(foreach s,$(SEEDS),$(foreach x,$(SPEEDUPS),$(foreach m,$(PAIRINGS),\
    $(eval $(call METHOD_RULES,$(m),$(word 1,$(subst +, ,$(m))),$(P)/sparse-$(word 2,$(subst +, ,$(m))).tns,$(x),$(s))))))

EVALS := $(foreach s,$(SEEDS),$(foreach x,$(SPEEDUPS),$(foreach m,$(METHODS),$(P)/eval-$(m)-$(x)-s$(s).txt)))

# One line per method, speed-up and seed: speedup method seed accuracy% speed_up
# params_kept importance_seconds reg_seconds.
$(P)/runs.tsv: $(P)/eval-base.txt $(EVALS)
	@for x in $(SPEEDUPS); do for m in $(METHODS); do for s in $(SEEDS); do \
	  r=$(P)/pruned-$$m-$$x-s$$s.txt; reg=$${m#*+}; rs=-; \
	  [ "$$reg" != "$$m" ] && rs=$$($(BIN)/tns-info $(P)/sparse-$$reg.tns | grep -o 'train.reg_seconds=[0-9.e+-]*' | cut -d= -f2 | head -1); \
	  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $$x $$m $$s \
	    "$$(awk -F '\t' '$$1 == "accuracy" {printf "%.2f", 100 * $$2}' $(P)/eval-$$m-$$x-s$$s.txt)" \
	    "$$(awk -F '\t' '$$1 == "speed_up" {print $$2}' $$r)" "$$(awk -F '\t' '$$1 == "params_kept" {print $$2}' $$r)" \
	    "$$(awk -F '\t' '$$1 == "importance_seconds" {print $$2}' $$r)" "$$rs"; \
	done; done; done > $@

# The leaderboard: per speed-up, methods ranked by mean accuracy after fine-tuning.
$(OUT)/prune.txt: $(P)/runs.tsv $(P)/eval-base.txt
	@{ base=$$(awk -F '\t' '$$1 == "accuracy" {printf "%.2f", 100 * $$2}' $(P)/eval-base.txt); \
	  echo "# PruningBench on Fashion-MNIST ($(LIMIT) training, $(TEST_LIMIT) test images): $(ARCH),"; \
	  echo "# base $(EPOCHS) epochs, sparse $(SPARSE_EPOCHS) and fine-tune $(FT_EPOCHS) on $(FT_LIMIT) images;"; \
	  echo "# global, protect $(PROTECT), $(STEPS) step(s), $(SAMPLES) data samples; seeds: $(SEEDS) (mean ± std)"; \
	  for x in $(SPEEDUPS); do \
	    echo; printf '%-4s %-22s %6s %14s %7s %7s %8s %9s %8s\n' rank "method @ $${x}x" base pruned delta speedup params% step_s reg_s; \
	    awk -F '\t' -v x=$$x '$$1 == x { n[$$2]++; a[$$2] += $$4; q[$$2] += $$4 * $$4; sp[$$2] += $$5; pk[$$2] += $$6; st[$$2] += $$7; rs[$$2] = $$8 } \
	      END { for (m in n) { mean = a[m] / n[m]; v = n[m] > 1 ? (q[m] - n[m] * mean * mean) / (n[m] - 1) : 0; \
	        printf "%.4f %s %.4f %.4f %.4f %.4f %s\n", mean, m, (v > 0 ? sqrt(v) : 0), sp[m] / n[m], pk[m] / n[m], st[m] / n[m], rs[m] } }' $< | \
	    sort -k1,1 -g -r | \
	    awk -v base=$$base -v steps=$(STEPS) -v nseeds=$(words $(SEEDS)) '{ rs = $$7 == "-" ? "-" : sprintf("%.3f", $$7); \
	      acc = nseeds > 1 ? sprintf("%.2f ± %.2f", $$1, $$3) : sprintf("%.2f", $$1); \
	      printf "%-4d %-22s %6.2f %14s %+7.2f %7.2f %8.1f %9.3f %8s\n", NR, $$2, base, acc, $$1 - base, $$4, 100 * $$5, $$6 / steps, rs}'; \
	  done; \
	} > $@
	@cat $@

# Accuracy (mean over seeds) against the speed-up reached, a line per method.
$(OUT)/prune.svg: $(P)/runs.tsv $(P)/eval-base.txt
	@base=$$(awk -F '\t' '$$1 == "accuracy" {printf "%.2f", 100 * $$2}' $(P)/eval-base.txt); \
	awk -F '\t' -v base=$$base -v title="$(ARCH), Fashion-MNIST, seeds $(SEEDS)" ' \
	  { k = $$2 SUBSEP $$1; if (!(k in n)) { order[++no] = k } n[k]++; a[k] += $$4; s[k] += $$5; \
	    if (!($$2 in seen)) { seen[$$2] = ++nm; name[nm] = $$2 } } \
	  END { lo = base; hi = base; for (k in n) { v = a[k] / n[k]; lo = v < lo ? v : lo; hi = v > hi ? v : hi } \
	    ys = hi - lo > 40 ? 10 : hi - lo > 16 ? 5 : hi - lo > 8 ? 2 : 1; lo = ys * int(lo / ys - 1); hi = ys * int(hi / ys + 1); \
	    W = 760; H = 480; L = 60; R = 200; T = 30; B = 50; \
	    xmax = 0; for (k in n) { v = s[k] / n[k]; xmax = v > xmax ? v : xmax } lmax = log(xmax * 1.1); \
	    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H; \
	    printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n<text x=\"%d\" y=\"18\">%s</text>\n", W, H, L, title; \
	    pw = W - L - R; ph = H - T - B; \
	    printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw, ph; \
	    for (t = lo; t <= hi; t += ys) { y = T + ph * (hi - t) / (hi - lo); \
	      printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n", L, L + pw, y, y, L - 4, y + 4, t } \
	    for (t = 1; t <= xmax * 1.1; t *= 2) { xx = L + pw * log(t) / lmax; \
	      printf "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%gx</text>\n", xx, xx, T, T + ph, xx, T + ph + 14, t } \
	    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">speed-up (base MACs / pruned MACs)</text>\n", L + pw / 2, H - 12; \
	    printf "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">test accuracy after fine-tuning (%%)</text>\n", T + ph / 2, T + ph / 2; \
	    for (i = 1; i <= nm; i++) { m = name[i]; col = sprintf("hsl(%d,70%%,%d%%)", (i * 360 / nm) % 360, i % 2 ? 40 : 55); \
	      pts = sprintf("%d,%.1f", L, T + ph * (hi - base) / (hi - lo)); \
	      for (j = 1; j <= no; j++) { split(order[j], kk, SUBSEP); if (kk[1] != m) continue; k = order[j]; \
	        pts = pts sprintf(" %.1f,%.1f", L + pw * log(s[k] / n[k]) / lmax, T + ph * (hi - a[k] / n[k]) / (hi - lo)) } \
	      printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s/>\n", pts, col, index(m, "+") ? " stroke-dasharray=\"5,3\"" : ""; \
	      printf "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/><text x=\"%d\" y=\"%d\">%s</text>\n", W - R + 10, W - R + 30, T + 14 * i, T + 14 * i, col, index(m, "+") ? " stroke-dasharray=\"5,3\"" : "", W - R + 34, T + 14 * i + 4, m } \
	    print "</svg>" }' $< > $@
