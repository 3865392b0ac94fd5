# logo.mk: brand-logo artwork for logo-synth, and logos-18 / logos-160 data.
#
#   make -f pipelines/logo.mk OUT=logo-out            (artwork + logos-18 sets)
#   make -f pipelines/logo.mk OUT=logo-out logos-160  (the 160-class sets too)
#   make -f pipelines/logo.mk OUT=demo-out demo       (make demo's logo step)
#
# Artwork: the npm package simple-icons (CC0; 3,400+ single-path brand SVGs,
# viewBox 0 0 24 24, with each brand's colour in data/simple-icons.json), and
# optionally @iconify-json/logos (full-colour logos, ICONIFY=1), fetched with
# `npm pack` (no node_modules, no scripts run) and rendered to PNG by Debian's
# librsvg (rsvg-convert). Each brand becomes $(OUT)/art/SLUG.png, filled with
# its brand colour (near-white colours are drawn dark grey so that the logo
# shows); class = brand. Brand names and logos are trademarks of their owners
# (simple-icons' DISCLAIMER.md): the data is for research on detection.
#
# Install steps, as for the Fashion-MNIST package: missing `npm` or
# `rsvg-convert` are installed with apt-get when run as root, otherwise the
# exact command is printed and the step stops. This pipeline needs the network
# once (npm); `make check` does not use it (tests use data/logos and shapes).

BIN      ?= bin
OUT      ?= logo-out
Q        ?= -q
SIZE     ?= 128
ART_PX   ?= 128
SI_VER   ?= 16.37.0
ICONIFY  ?= 0
FASHION  ?= /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
N_TRAIN  ?= 4000
N_TEST   ?= 1000
PY       ?= python3

CLUTTER := $(if $(wildcard $(FASHION)),--clutter $(FASHION))

.PHONY: all art logos-18 logos-160 tools demo
all: logos-18
logos-18: $(OUT)/logos18-train.tns $(OUT)/logos18-test.tns $(OUT)/logos18-heldout.tns $(OUT)/logos18-sheet.png
logos-160: $(OUT)/logos160-train.tns $(OUT)/logos160-test.tns $(OUT)/logos160-heldout.tns
art: $(OUT)/art/.done

$(OUT):
	mkdir -p $@

tools:
	@for t in npm:npm rsvg-convert:librsvg2-bin; do \
	  cmd=$${t%%:*}; pkg=$${t#*:}; \
	  command -v $$cmd > /dev/null && continue; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y $$pkg || exit 1; \
	  else echo "logo.mk: $$cmd is missing: sudo apt-get install $$pkg" >&2; exit 1; fi; \
	done

# npm pack: the package tarball only, nothing executed
$(OUT)/simple-icons-$(SI_VER).tgz: | $(OUT) tools
	cd $(OUT) && npm pack --silent simple-icons@$(SI_VER) > /dev/null
	test -s $@

$(OUT)/simple-icons/.unpacked: $(OUT)/simple-icons-$(SI_VER).tgz
	rm -rf $(OUT)/simple-icons && mkdir -p $(OUT)/simple-icons
	tar -xzf $< -C $(OUT)/simple-icons --strip-components=1
	touch $@

# slug<TAB>hex for every icon, from the package's JSON index
$(OUT)/brands.tsv: $(OUT)/simple-icons/.unpacked
	$(PY) -c 'import json, sys; \
	[print(i["slug"], i["hex"], sep="\t") for i in json.load(open(sys.argv[1]))]' \
	  $(OUT)/simple-icons/data/simple-icons.json > $@.tmp && mv $@.tmp $@

# SVG -> PNG in the brand colour; an SVG that does not render fails the step
# (rsvg-convert's message names it), and the directory appears only when whole.
$(OUT)/art/.done: $(OUT)/brands.tsv | tools
	rm -rf $(OUT)/art.tmp && mkdir -p $(OUT)/art.tmp
	while IFS="$$(printf '\t')" read -r slug hex; do \
	  svg=$(OUT)/simple-icons/icons/$$slug.svg; [ -f "$$svg" ] || continue; \
	  case "$$hex" in [Ff][Ff][Ff][Ff][Ff][Ff]|[Ee][Ee][Ee][Ee][Ee][Ee]) hex=333333;; esac; \
	  sed "s|<svg |<svg fill=\"#$$hex\" |" "$$svg" | \
	    rsvg-convert -w $(ART_PX) -h $(ART_PX) -o $(OUT)/art.tmp/$$slug.png || \
	    { echo "logo.mk: $$svg does not render" >&2; exit 1; }; \
	done < $<
	if [ "$(ICONIFY)" = 1 ]; then $(MAKE) -f pipelines/logo.mk OUT=$(OUT) iconify; fi
	rm -rf $(OUT)/art && mv $(OUT)/art.tmp $(OUT)/art && touch $@

# @iconify-json/logos: full-colour SVG bodies in one JSON file, as logos-NAME.png
.PHONY: iconify
iconify: | $(OUT) tools
	cd $(OUT) && npm pack --silent @iconify-json/logos > /dev/null
	rm -rf $(OUT)/iconify && mkdir -p $(OUT)/iconify
	tar -xzf $(OUT)/iconify-json-logos-*.tgz -C $(OUT)/iconify --strip-components=1
	$(PY) -c 'import json, sys, os; j = json.load(open(sys.argv[1])); \
	W, H = j.get("width", 256), j.get("height", 256); \
	[open(os.path.join(sys.argv[2], "logos-" + n + ".svg"), "w").write( \
	  "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\">%s</svg>" \
	  % (i.get("width", W), i.get("height", H), i["body"])) for n, i in j["icons"].items()]' \
	  $(OUT)/iconify/icons.json $(OUT)/iconify
	for svg in $(OUT)/iconify/logos-*.svg; do \
	  rsvg-convert -w $(ART_PX) -h $(ART_PX) --keep-aspect-ratio -o $(OUT)/art.tmp/$$(basename $$svg .svg).png $$svg || \
	    { echo "logo.mk: $$svg does not render" >&2; exit 1; }; \
	done

# the data sets: same brands (--brand-seed 1) across splits
$(OUT)/logos18-%.tns: $(OUT)/art/.done
	$(BIN)/logo-synth $(Q) --preset logos-18 --split $* --size $(SIZE) $(CLUTTER) \
	  -n $(if $(filter train,$*),$(N_TRAIN),$(N_TEST)) -o $@ $(OUT)/art
$(OUT)/logos160-%.tns: $(OUT)/art/.done
	$(BIN)/logo-synth $(Q) --preset logos-160 --split $* --size $(SIZE) $(CLUTTER) \
	  -n $(if $(filter train,$*),$(N_TRAIN),$(N_TEST)) -o $@ $(OUT)/art
$(OUT)/logos18-sheet.png: $(OUT)/logos18-test.tns
	$(BIN)/img-write $(Q) --cols 8 --limit 32 -o $@ $<

# make demo's logo step, offline (the ten CC0 icons of data/logos): 1500
# synthetic 64x64 scenes of 6 brands, logo-det trained briefly (width 8, 12
# epochs, ~30 s on 2 threads), detection on 100 test scenes, its mAP, and a
# contact sheet of 16 test scenes with the detected boxes drawn.
DEMO_ART ?= data/logos
DEMO_N   ?= 1500
DEMO_EP  ?= 12
DEMO_SYNTH = $(BIN)/logo-synth $(Q) -k 6 --size 64 --min-scale 0.15
demo: $(OUT)/logo.txt
$(OUT)/logo-train.tns: | $(OUT)
	$(DEMO_SYNTH) -n $(DEMO_N) -o $@ $(DEMO_ART)
$(OUT)/logo-test.tns: | $(OUT)
	$(DEMO_SYNTH) --split test -n 100 -o $@ $(DEMO_ART)
$(OUT)/logo-det.tns: $(OUT)/logo-train.tns
	$(BIN)/logo-det train $(Q) -w 8 -e $(DEMO_EP) -o $@ $<
$(OUT)/logo-detections.tns: $(OUT)/logo-det.tns $(OUT)/logo-test.tns
	$(BIN)/logo-det detect $(Q) --images -t 0.3 -m $< -o $@ $(OUT)/logo-test.tns
$(OUT)/logo-detections.png: $(OUT)/logo-detections.tns
	$(BIN)/img-write $(Q) --cols 8 --limit 16 -o $@ $<
$(OUT)/logo.txt: $(OUT)/logo-det.tns $(OUT)/logo-test.tns $(OUT)/logo-detections.png
	{ echo "# logo-det (CenterNet, width 8, $(DEMO_EP) epochs on $(DEMO_N) scenes of 6 brands, 64x64), 100 test scenes:"; \
	  $(BIN)/logo-det eval -q -m $< $(OUT)/logo-test.tns | grep '^#'; \
	  echo "# detected boxes drawn: $(OUT)/logo-detections.png"; } > $@.tmp && mv $@.tmp $@
