# fashion.mk: Fashion-MNIST from its Debian package to streams, ImageFolder
# archives, a per-class summary and a contact sheet.
#
#   make -f pipelines/fashion.mk OUT=demo-out          (what `make demo` runs)
#
# Every step is one netsmith program; files are rebuilt only when their inputs
# change, so re-running is cheap. The training step is a small CNN for one
# epoch by default; `make demo ARCH=resnet20 EPOCHS=15` trains the ResNet-20.

BIN     ?= bin
OUT     ?= demo-out
DATA    ?= /usr/share/datasets/fashion-mnist
CLASSES ?= examples/fashion-mnist.classes
Q       ?= -q
ARCH    ?= vgg --depth 4 --width 2
EPOCHS  ?= 1
TRAIN_FLAGS ?= --lr 0.05 --batch 128

TRAIN_IDX := $(DATA)/train-images-idx3-ubyte.gz
TEST_IDX  := $(DATA)/t10k-images-idx3-ubyte.gz

.PHONY: all
all: $(OUT)/summary.txt $(OUT)/contact-sheet.png $(OUT)/fashion-test.zip $(OUT)/eval.txt

$(OUT):
	mkdir -p $@

# IDX (+ labels found beside the images) -> image-batch streams
$(OUT)/fashion-train.tns: $(TRAIN_IDX) $(CLASSES) | $(OUT)
	$(BIN)/img-read $(Q) --classes $(CLASSES) -o $@ $(TRAIN_IDX)
$(OUT)/fashion-test.tns: $(TEST_IDX) $(CLASSES) | $(OUT)
	$(BIN)/img-read $(Q) --classes $(CLASSES) -o $@ $(TEST_IDX)

# streams -> ImageFolder archives of PNGs (reproducible bytes)
$(OUT)/fashion-train.tar: $(OUT)/fashion-train.tns
	$(BIN)/img-write $(Q) -o $@ $<
$(OUT)/fashion-test.zip: $(OUT)/fashion-test.tns
	$(BIN)/img-write $(Q) -o $@ $<

# archive -> stream again: the per-class counts must survive the round trip
$(OUT)/summary.txt: $(OUT)/fashion-train.tar $(OUT)/fashion-test.tns
	{ echo "# fashion-train.tar, read back:"; $(BIN)/img-read $(Q) $< | $(BIN)/tns-info --summary; \
	  echo "# fashion-test.tns:"; $(BIN)/tns-info --summary $(OUT)/fashion-test.tns; } > $@

# the first 100 test images, 20 per row
$(OUT)/contact-sheet.png: $(OUT)/fashion-test.tns
	$(BIN)/img-write --cols 20 --limit 100 -o $@ $<

# a model shaped like the data (input, classes), trained, then evaluated;
# settings.txt changes (and retrains) only when ARCH, EPOCHS or TRAIN_FLAGS do
.PHONY: FORCE
$(OUT)/settings.txt: FORCE | $(OUT)
	@echo '$(ARCH) | $(EPOCHS) | $(TRAIN_FLAGS)' | cmp -s - $@ || echo '$(ARCH) | $(EPOCHS) | $(TRAIN_FLAGS)' > $@
$(OUT)/model-init.tns: $(OUT)/fashion-train.tns $(OUT)/settings.txt
	$(BIN)/net-init --arch $(ARCH) --like $< -o $@
$(OUT)/model.tns: $(OUT)/model-init.tns $(OUT)/fashion-train.tns
	$(BIN)/net-train --model $< --epochs $(EPOCHS) $(TRAIN_FLAGS) --log $(OUT)/train-log.tsv \
	    -o $@ $(OUT)/fashion-train.tns
$(OUT)/eval.txt: $(OUT)/model.tns $(OUT)/fashion-test.tns
	$(BIN)/net-eval $(Q) --model $< $(OUT)/fashion-test.tns > $@
