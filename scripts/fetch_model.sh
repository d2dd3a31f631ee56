#!/bin/sh
# Downloads the default model (Karpathy's stories260K, MIT) into models/ once,
# for machines without ../shared. Usage: fetch_model.sh DESTDIR
set -e
dest=${1:-models}
base=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K
mkdir -p "$dest"
for f in stories260K.bin tok512.bin; do
  if [ ! -s "$dest/$f" ]; then
    echo "qscope: downloading $f from $base" >&2
    if command -v curl >/dev/null 2>&1; then
      curl -fL --retry 3 -o "$dest/$f.part" "$base/$f"
    else
      wget -O "$dest/$f.part" "$base/$f"
    fi
    mv "$dest/$f.part" "$dest/$f"
  fi
done
