"""Which files a sub-command reads and writes: image files in folders, and the output path of each,
refusing outputs that would replace an input, be claimed twice, or replace an existing file."""

from __future__ import annotations

import os

from .errors import note, report

__all__ = ["RESTORED_SUFFIX", "images_in", "collect_inputs", "plan_outputs"]

RESTORED_SUFFIX = "_SwinIR"


def images_in(folder: str, recursive: bool, skip: str | None = None) -> list[str]:
    """Image files in ``folder`` (sorted; hidden files and the ``skip`` folder left out)."""
    from .. import imageio

    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip is None or os.path.realpath(os.path.join(root, d)) != skip))
        found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".") and imageio.is_image_file(f)]
        if not recursive:
            break
    return found


def collect_inputs(inputs: list[str], recursive: bool, out_dir: str) -> tuple[list[tuple[str, str]], int]:
    """(input path, output path relative to OUTDIR without suffix) pairs, and how many inputs were bad."""
    from .. import imageio

    pairs, failures = [], 0
    skip = os.path.realpath(out_dir)
    for given in inputs:
        if os.path.isdir(given):
            files = images_in(given, recursive, skip)
            if not files:
                report(f"{given}: no images found ({', '.join(sorted(imageio.FORMATS))})")
                failures += 1
            pairs += [(path, os.path.splitext(os.path.relpath(path, given))[0]) for path in files]
        elif os.path.isfile(given):
            pairs.append((given, os.path.splitext(os.path.basename(given))[0]))
        else:
            report(f"{given}: no such file or folder")
            failures += 1
    return pairs, failures


def plan_outputs(pairs: list[tuple[str, str]], out_dir: str, suffix: str, args) -> tuple[list[tuple[str, str]], int]:
    """(input, output) jobs and the number of refused ones: an output may not replace its input, be
    claimed twice or replace an existing file (unless --overwrite; --skip-existing leaves it quietly)."""
    from .. import imageio

    jobs, claimed, failures, skipped = [], {}, 0, 0
    inputs = {os.path.realpath(path): path for path, _ in pairs}
    for path, stem in pairs:
        out_path = os.path.join(out_dir, stem + suffix)
        key = os.path.realpath(out_path)
        if key in inputs:
            replaced = "the input" if inputs[key] == path else f"the input {inputs[key]}"
            report(f"{path}: the output {out_path} would replace {replaced}; choose another output folder")
            failures += 1
        elif key in claimed:
            report(f"{path}: output {out_path} would also be written for {claimed[key]}; rename one of them")
            failures += 1
        elif os.path.exists(out_path) and not args.overwrite:
            if args.skip_existing:
                skipped += 1
            else:
                report(f"{out_path}: {imageio.ALREADY_EXISTS}")
                failures += 1
        else:
            claimed[key] = path
            jobs.append((path, out_path))
    if skipped:
        note(f"--skip-existing: {skipped} output(s) already exist, {len(jobs)} to do", args.quiet)
    return jobs, failures
