"""Run the book's notebooks headless with papermill: in place for `make book`, or in batches over a parameter grid.

    # every notebook of the toc at the cpu profile, executed outputs written back (what `make book` does)
    python data_scripts/run_book.py --toc --in-place --profile cpu
    # chapter 1 over five seeds, two runs at a time; one table of all metrics with mean ± std over seeds
    python data_scripts/run_book.py notebooks/01_semantic_parts_vae.ipynb -p seed 0 1 2 3 4 -p profile cpu -j 2

A `-p` name that a notebook does not declare in its `parameters` cell is refused before anything runs. Values are
read as YAML scalars (3 -> int, 0.5 -> float, true -> bool, null -> None, anything else a string).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from helpers import book, config

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default with --toc: all of them)")
    parser.add_argument("--toc", nargs="?", const="_toc.yml", default=None, help="run the notebooks of this _toc.yml")
    parser.add_argument("-p", "--parameter", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter and one or more values (a grid over all -p's)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="notebooks run at the same time")
    parser.add_argument("--out", type=Path, default=Path("runs/batch"), help="folder of the batch's runs and tables")
    parser.add_argument("--in-place", action="store_true", help="write each executed notebook over its source")
    parser.add_argument("--profile", default=None, help="BOOK_PROFILE for the kernels (the notebooks' default)")
    parser.add_argument("--list", action="store_true", help="print the toc's notebooks and exit")
    return parser.parse_args(argv)


def build_grid(pairs: list[list[str]]) -> dict[str, list]:
    grid: dict[str, list] = {}
    for pair in pairs:
        if len(pair) < 2:
            raise ValueError(f"-p {pair[0]}: give the parameter's name and at least one value")
        name, values = pair[0], [yaml.safe_load(v) for v in pair[1:]]
        if name in grid:
            raise ValueError(f"-p {name} given twice: list all its values after one -p")
        grid[name] = values
    return grid


def main(argv=None) -> int:
    args = parse_args(argv)
    notebooks = list(args.notebooks)
    if args.toc:
        notebooks = notebooks or book.toc_notebooks(args.toc)
    if args.list:
        print("\n".join(str(nb) for nb in notebooks))
        return 0
    try:
        if not notebooks:
            raise ValueError("no notebooks given (name them, or use --toc)")
        missing = [str(nb) for nb in notebooks if not nb.is_file()]
        if missing:
            raise ValueError(f"no such notebook: {', '.join(missing)}")
        grid = build_grid(args.parameter)
        book.check_parameters(notebooks, list(grid) + ([] if args.in_place else ["out_dir"]))
        combos = book.parameter_grid(grid)
        if args.in_place and len(combos) > 1:
            raise ValueError("--in-place runs one combination of parameters; drop the extra values")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = {"BOOK_PROFILE": args.profile} if args.profile else {}
    commit = config.git_commit(REPO)  # before anything is written back: every header of the batch shows it
    if commit:
        env["BOOK_GIT_COMMIT"] = commit
    jobs = []
    for nb in notebooks:
        for params in combos:
            if args.in_place:
                jobs.append(book.Job(nb, dict(params), nb, in_place=True))
            else:
                folder = (args.out / nb.stem / book.run_name(params)).resolve()
                jobs.append(book.Job(nb, {**params, "out_dir": str(folder)}, folder / nb.name))
    print(f"running {len(jobs)} notebook run(s), {args.jobs} at a time", flush=True)
    results = book.run_jobs(jobs, parallel=args.jobs, env=env)
    failed = [(job, error) for job, error in results if error]
    for job, error in results:
        status = "ok" if error is None else f"FAILED ({error[0]})"
        shown = {k: v for k, v in job.params.items() if k != "out_dir"}
        print(f"  {job.notebook} {book.run_name(shown)}: {status}")
    for job, (_, text) in failed:
        print(f"\n{job.notebook} failed:\n{text}", file=sys.stderr)
    if not args.in_place:
        rows = [(job.notebook.stem, {k: v for k, v in job.params.items() if k != "out_dir"},
                 job.output.parent / "metrics.json")
                for job, error in results if error is None and (job.output.parent / "metrics.json").is_file()]
        if rows:
            table = book.summarise(book.collect(rows))
            csv_path, md_path = book.write_tables(table, args.out)
            print(f"tables: {csv_path} and {md_path}")
            print(md_path.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
