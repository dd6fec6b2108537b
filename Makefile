# tmor: two commands on a fresh machine.
#   make quickstart [INPUT=list.csv|folder] [POSE_MODEL=...] [EMBED_MODEL=...]   build a small corpus
#   make test                                                                    run the test suite
# Each target creates the virtual environment it needs (.venv) and checks for ffmpeg.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared/data
INPUT ?= examples/kinetics_sample.csv
ROOT ?= quickstart/corpus
CONFIG ?= examples/quickstart.yaml
# Offline machines: point these at local files (the shared test data has YOLO11n-pose weights).
POSE_MODEL ?= $(if $(wildcard $(SHARED)/models/yolo11n-pose.pt),$(SHARED)/models/yolo11n-pose.pt,yolo11n-pose.pt)
# Without EMBED_MODEL the quickstart builds a tiny random-weight CLIP so that every stage runs
# offline; its embeddings carry no meaning. Real ones: EMBED_MODEL=open_clip:ViT-B-32:openai
# (downloads) or open_clip:ViT-B-32:/path/to/open_clip_pytorch_model.bin or viclip:/path/ViClip.pth
EMBED_MODEL ?=
TINY_CLIP := quickstart/models/tmor-tiny-clip
EMBED_SPEC := $(if $(EMBED_MODEL),$(EMBED_MODEL),open_clip:$(TINY_CLIP).json:$(TINY_CLIP).pt)

.PHONY: quickstart test lint bench ffmpeg venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned: this exact build is on the machine's disk; a newer one pulls gigabytes
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing ffmpeg (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else \
	    echo "ffmpeg is needed on PATH (yt-dlp range downloads and clip cutting): install it" >&2; exit 1; \
	  fi; }

$(TINY_CLIP).pt: | venv
	@echo "WARNING: no EMBED_MODEL given: using a random-weight tiny CLIP ($(TINY_CLIP).pt) so that"
	@echo "         the quickstart runs offline; its video/text embeddings are meaningless."
	$(BIN)/python -c "from tmor.pipeline.vl.tiny import write_open_clip as w; w('$(dir $(TINY_CLIP))')"

quickstart: venv ffmpeg $(if $(EMBED_MODEL),,$(TINY_CLIP).pt)
	$(BIN)/tmor-data run $(INPUT) --root $(ROOT) --config $(CONFIG) \
	  --allow-local $(abspath $(if $(wildcard $(INPUT)/.),$(INPUT),$(dir $(INPUT)))) \
	  --pose-model $(POSE_MODEL) --embed-model $(EMBED_SPEC)
	$(BIN)/tmor-data status --root $(ROOT)

test: venv ffmpeg
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check tmor tests bench

# every benchmark with its defaults (minutes each on a CPU); see each script's --help
bench: venv ffmpeg
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) quickstart .pytest_cache
