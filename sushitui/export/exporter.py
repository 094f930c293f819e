"""Export a dataset (or a query result) for a trainer: the one core function the CLI
and the TUI dialog call."""

from __future__ import annotations

import errno
import json
import os
import posixpath
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

from sushitui.dataset.caption_files import CaptionFileError
from sushitui.dataset.paths import UnsafePathError, to_abs
from sushitui.dataset.registry import get_dataset
from sushitui.export import crops, formats, masks, trainers
from sushitui.export.captions import BuiltCaption, CaptionBuilder, CaptionRow
from sushitui.export.options import ExportError, ExportOptions, ExportProblem, ExportReport, ShortenedName
from sushitui.export.writer import OutputTree, is_shortened, prepare_outdir, safe_component
from sushitui.progress import CancelToken, ProgressCallback, ProgressEvent, Throttle
from sushitui.store import Caption, Dataset, Item
from sushitui.store.models import ITEM_FLAGS

_CHUNK = 900  # SQLite host parameters per IN (...) list


@dataclass
class ItemRow:
    id: int
    base_name: str
    rel_dir: str
    image_path: str | None
    related_json: str | None  # JSON suffix -> path; parsed only for formats that use it

    @property
    def related_images(self) -> dict:
        return json.loads(self.related_json) if self.related_json else {}

    width: int | None
    height: int | None
    flags: int = 0  # Item.flags bits (sushitui.dataset.marks)

    @property
    def is_reg(self) -> bool:
        return bool(self.flags & _REG_BIT)


_REG_BIT = 1 << ITEM_FLAGS.index("reg")


@dataclass
class PreviewCaption:
    item_id: int
    image: str  # dataset-relative image path
    text: str  # exactly what the trainer reads


def _item_select(dataset: Dataset, options: ExportOptions, item_ids: Sequence[int] | None):
    from sushitui.dataset.items import select_items

    query = select_items(dataset.id)
    if options.query and options.query.strip():
        from sushitui.tags.query import QueryError, apply_query  # the query language (helper "tags")

        try:
            query = apply_query(query, options.query, dataset.id)
        except QueryError as exc:
            raise ExportError(f"bad query: {exc}") from exc
    if item_ids is not None:
        query = query.where(Item.id.in_(list(item_ids)))
    if not options.include_excluded:  # items flagged "exclude" stay out of training sets
        from sushitui.dataset.marks import excluded_filter

        query = query.where(excluded_filter())
    return query


def _rows(query) -> Iterator[tuple]:
    """Plain tuples straight from SQLite: at 100k rows peewee's per-row conversion
    (JSON columns, model objects) cost ~10x the query itself."""
    sql, params = query.sql()
    return iter(query.model._meta.database.execute_sql(sql, params))


def _load_items(dataset: Dataset, options: ExportOptions, limit: int | None = None) -> list[ItemRow]:
    """The items to export, in dataset order (folder, then name, in natural order)."""
    ids = options.item_ids
    small_selection = ids is not None and len(ids) <= _CHUNK
    query = _item_select(dataset, options, ids if small_selection else None).order_by(Item.name_key)
    wanted = set(ids) if ids is not None and not small_selection else None
    if limit is not None and wanted is None:
        query = query.limit(limit)
    cols = query.select(
        Item.id, Item.base_name, Item.rel_dir, Item.image_path, Item.related_images, Item.width, Item.height, Item.flags
    )
    rows = []
    for r in _rows(cols):
        if wanted is not None and r[0] not in wanted:
            continue
        rows.append(ItemRow(r[0], r[1], r[2] or "", r[3], r[4], r[5], r[6], r[7] or 0))
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _caption_filter(options: ExportOptions):
    """Only the captions the fallback order can pick."""
    order = [c.strip() for c in options.caption if c.strip()]
    subtypes = set(order) | ({""} if "main" in order else set())
    return Caption.subtype.in_(sorted(subtypes)) | Caption.type.in_(order)


def _load_captions(
    dataset: Dataset, options: ExportOptions, items: Sequence[ItemRow], every_subtype: bool = False
) -> dict[int, list[CaptionRow]]:
    """The items' captions the fallback order can pick (``every_subtype``: all of them,
    for formats that write each subtype: diffusers' extra columns)."""
    q = Caption.select(Caption.item, Caption.type, Caption.subtype, Caption.content)
    if len(items) <= _CHUNK:
        q = q.where(Caption.item.in_([i.id for i in items]))
    else:
        # one query over the selection (a sub-select, not 100k parameters)
        selection = _item_select(dataset, options, None).order_by().select(Item.id)
        q = q.where(Caption.item.in_(selection))
    out: dict[int, list[CaptionRow]] = {}
    if not every_subtype:
        q = q.where(_caption_filter(options))
    for item_id, ctype, subtype, content in _rows(q.order_by(Caption.id)):
        out.setdefault(item_id, []).append(CaptionRow(ctype, subtype or "", content or ""))
    return out


def _iter_built(
    dataset: Dataset,
    options: ExportOptions,
    items: Sequence[ItemRow],
    builder: CaptionBuilder,
    every_subtype: bool = False,
) -> Iterator[tuple[ItemRow, BuiltCaption, Sequence[CaptionRow]]]:
    captions = _load_captions(dataset, options, items, every_subtype)
    for item in items:
        rows = captions.get(item.id, ())
        yield item, builder.build(rows), rows


def preview_captions(dataset: Dataset | int | str, options: ExportOptions, n: int = 3) -> list[PreviewCaption]:
    """The first ``n`` items' captions exactly as the trainer will read them."""
    options.validate()
    ds = get_dataset(dataset)
    builder = CaptionBuilder.from_database(options)
    items = _load_items(ds, options, limit=n)
    return [
        PreviewCaption(item.id, item.image_path or item.base_name, formats.trainer_text(options.format, built))
        for item, built, _rows_ in _iter_built(ds, options, items, builder)
    ]


@dataclass
class TrainerState:
    """What the issue-17 formats collect while items are exported (trainers.py)."""

    rows: list = field(default_factory=list)  # kohya-jsonl / diffusers metadata rows, in export order
    columns: dict = field(default_factory=dict)  # diffusers: extra caption columns, in order of appearance
    builders: dict = field(
        default_factory=dict
    )  # subtype -> CaptionBuilder (diffusers: every subtype met; diffusion-pipe: --caption)
    captions: dict = field(default_factory=dict)  # diffusion-pipe: folder -> {image name: [captions]}


def _image_name(stem: str, source_rel: str) -> str:
    return stem + posixpath.splitext(source_rel)[1].lower()


def export_dataset(
    dataset: Dataset | int | str,
    outdir: str | os.PathLike,
    options: ExportOptions,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Export the dataset's items (or the query's) into OUTDIR in ``options.format``.

    Per-item problems (a missing image, a path the database should never have held)
    are reported and the export goes on. Cancelling removes what was staged and leaves
    OUTDIR empty. Raises ExportError when the export cannot start.
    """
    started = time.monotonic()
    options.validate()
    ds = get_dataset(dataset)
    options = _with_trainer_settings(options, ds)
    builder = CaptionBuilder.from_database(options)
    items = _load_items(ds, options)
    fmt = options.format
    root = Path(ds.root_path)
    out = prepare_outdir(outdir, [ds.root_path])
    report = ExportReport(outdir=str(out), format=fmt, items_total=len(items))
    items = _without_unsupported_reg(items, fmt, ds, report)
    # cropped items (sushitui.dataset.marks) are written as cropped copies; originals stay
    tree = crops.cropping_tree(OutputTree(out, options.link_mode), root, items)
    config_root = options.config_root or ("." if options.zip else str(out))

    folders: dict[str, formats.FolderInfo] = {}
    metadata: dict[str, dict] = {}
    long_sides: list[int] = []
    throttle = Throttle(progress)
    event = ProgressEvent("exporting", 0, len(items), unit="items")
    throttle(event, force=True)
    link_counts = {"link": 0, "symlink": 0, "copy": 0}
    source_dirs: dict[str, str] = {}
    state = TrainerState()
    if fmt == "diffusion-pipe":
        state.builders = trainers.per_subtype_builders(builder, [c.strip() for c in options.caption if c.strip()])
    _plan_masks(items, fmt, ds, options, folders, report)
    _plan_controls(items, fmt, ds, options, folders, report)
    try:
        for done, (item, built, rows) in enumerate(
            _iter_built(ds, options, items, builder, every_subtype=fmt == "diffusers"), 1
        ):
            if cancel is not None and done % 64 == 0 and cancel.cancelled:
                report.cancelled = True
                break
            if fmt == "diffusers":
                new = {r.subtype for r in rows} - state.builders.keys()
                state.builders.update(trainers.per_subtype_builders(builder, sorted(new)))
            _export_item(
                item,
                built,
                fmt,
                ds,
                root,
                tree,
                options,
                folders,
                metadata,
                report,
                link_counts,
                source_dirs,
                rows,
                state,
            )
            if item.width and item.height:
                long_sides.append(max(item.width, item.height))
            event.done = done
            throttle(event)
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
        if report.cancelled:
            tree.discard()
            report.elapsed = time.monotonic() - started
            return report
        used = list({id(f): f for f in folders.values() if f.images}.values())
        if fmt == "kohya-toml":
            report.config_files.append(
                tree.write_config("dataset.toml", formats.kohya_dreambooth_toml(used, options, config_root, long_sides))
            )
        elif fmt == "kohya-json":
            report.config_files.append(tree.write_config("metadata.json", formats.kohya_metadata_json(metadata)))
            report.config_files.append(
                tree.write_config(
                    "dataset.toml", formats.kohya_finetune_toml(options, config_root, long_sides, "metadata.json")
                )
            )
        elif fmt == "ai-toolkit":
            report.config_files.append(
                tree.write_config("dataset.yaml", formats.ai_toolkit_yaml(used, options, config_root, long_sides))
            )
        else:
            _write_trainer_configs(fmt, tree, used, options, config_root, long_sides, state, report)
        event.phase = "publishing"
        throttle(event, force=True)
        if options.zip:
            report.zip_path = str(tree.publish_zip(f"{out.name or 'export'}.zip"))
        else:
            tree.publish()
    except BaseException:
        tree.discard()
        raise
    report.images_linked = link_counts["link"]
    report.images_symlinked = link_counts["symlink"]
    report.images_copied = link_counts["copy"]
    report.elapsed = time.monotonic() - started
    throttle(event, force=True)
    return report


def _with_trainer_settings(options: ExportOptions, ds: Dataset) -> ExportOptions:
    """The repeats a trainer config gave the dataset (``dataset import-config``), unless
    --repeats is given: the trainer config's num_repeats wins over a folder's ``N_``
    prefix in the trainer too."""
    repeats = (ds.trainer or {}).get("repeats")
    if options.repeats is None and isinstance(repeats, int) and not isinstance(repeats, bool) and 1 <= repeats <= 10000:
        return replace(options, repeats=repeats)
    return options


def _source_path(root: Path, rel: str, source_dirs: dict[str, str]) -> str:
    """``to_abs(root, rel)`` with the folder part resolved once per folder (100k Path
    objects cost more than the links); the file part must be a plain name."""
    directory, name = posixpath.split(rel)
    if name in ("", ".", ".."):
        raise UnsafePathError(f"refusing path outside the dataset root: {rel!r}")
    folder = source_dirs.get(directory)
    if folder is None:
        folder = source_dirs[directory] = str(to_abs(root, directory))
    return os.path.join(folder, name)


def _write_trainer_configs(fmt, tree, used, options, config_root, long_sides, state, report) -> None:
    if fmt == "diffusers":
        columns = ["file_name", "text", *state.columns]
        related = [c for c in ("conditioning_image_file_name", "mask_file_name") if any(c in r for r in state.rows)]
        text = trainers.jsonl(trainers.diffusers_rows(state.rows, columns + related))
        report.config_files.append(tree.write_config("metadata.jsonl", text))
    elif fmt == "kohya-jsonl":
        report.config_files.append(tree.write_config("metadata.jsonl", trainers.jsonl(state.rows)))
        report.config_files.append(
            tree.write_config(
                "dataset.toml", formats.kohya_finetune_toml(options, config_root, long_sides, "metadata.jsonl")
            )
        )
    elif fmt == "onetrainer":
        report.config_files.append(
            tree.write_config("concepts.json", trainers.onetrainer_concepts(used, options, config_root))
        )
    elif fmt == "diffusion-pipe":
        for folder, captions in state.captions.items():
            if any(len(texts) > 1 for texts in captions.values()):
                tree.write_caption(
                    folder, trainers.CAPTIONS_JSON, json.dumps(captions, indent=2, ensure_ascii=False) + "\n"
                )
                report.config_files.append(tree.rel(folder, trainers.CAPTIONS_JSON))
        report.config_files.append(
            tree.write_config("dataset.toml", trainers.diffusion_pipe_toml(used, options, config_root, long_sides))
        )
    elif fmt == "musubi":
        report.config_files.append(
            tree.write_config("dataset.toml", trainers.musubi_toml(used, options, config_root, long_sides))
        )


def _export_item(
    item, built, fmt, ds, root, tree, options, folders, metadata, report, link_counts, source_dirs, rows=(), state=None
) -> None:
    if not item.image_path:
        report.problems.append(ExportProblem(item.id, item.base_name, "the item has no image; skipped"))
        return
    try:
        source = _source_path(root, item.image_path, source_dirs)
    except UnsafePathError:
        report.problems.append(
            ExportProblem(
                item.id,
                item.image_path,
                "the database holds a path outside the dataset folder; skipped (run `sushitui dataset reindex`)",
            )
        )
        return
    info = _folder_for(item, fmt, ds, options, folders, report)
    mask = None
    if info.mask_folder is not None and fmt in formats.KOHYA_MASK_FORMATS:
        mask, info = _kohya_mask(item, root, info, options, folders, report)
    if info.needs_control:
        info = _control_folder(item, root, info, options, folders, report)
    # the base name, not the image stem: a group's X_target.png is exported as X.png, so
    # the caption X.txt pairs with it and control images share the stem (ai-toolkit)
    wanted_stem = item.base_name or posixpath.splitext(posixpath.basename(item.image_path))[0]
    # one stem for every file of the item, shortened here once when too long, so the
    # caption, mask, control image and metadata key all follow the image
    stem = tree.unique_stem(info.folder, wanted_stem)
    name = _image_name(stem, item.image_path)
    shortened = is_shortened(wanted_stem)
    # shortening alone is reported in report.shortened, not as a rename
    if stem != wanted_stem and not (shortened and stem == safe_component(wanted_stem, "image")):
        report.renamed.append((item.image_path, tree.rel(info.folder, name)))
    files = [tree.rel(info.folder, name)]
    try:
        how = tree.place_image(source, info.folder, name)
        link_counts[how] += 1
        placed: dict[str, str] = {}
        if fmt in formats.PARALLEL_RELATED_FORMATS:
            placed = _place_related(item, root, tree, info, stem, options, link_counts, report)
        elif fmt == "onetrainer":
            placed = _place_onetrainer_related(item, root, tree, info, stem, options, link_counts, report)
        files += placed.values()
        if mask is not None:
            files.append(_place_kohya_mask(tree, info, name, stem, mask, link_counts, how))
        if formats.WRITES_CAPTION_FILES[fmt]:
            if built.text:
                tree.write_caption(info.folder, stem + formats.CAPTION_EXT, built.text)
                report.captions_written += 1
                files.append(tree.rel(info.folder, stem + formats.CAPTION_EXT))
            else:
                report.items_without_caption += 1
        elif fmt == "kohya-json":
            key = "/".join(info.folder + (stem,))
            metadata[key] = formats.metadata_entry(built)
            if not built.text:
                report.items_without_caption += 1
        elif not built.text:
            report.items_without_caption += 1
        if fmt in ("kohya-jsonl", "diffusers", "diffusion-pipe"):
            _collect_row(fmt, item, built, rows, info, name, tree, placed, state)
    except FileNotFoundError:
        # checked here rather than with a stat per item up front: os.link fails the same way
        report.problems.append(
            ExportProblem(
                item.id, item.image_path, "the image is missing on disk; skipped (run `sushitui dataset reindex`)"
            )
        )
        return
    except (OSError, CaptionFileError) as exc:
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            # no point going on item by item: stop, and the staged files are removed
            raise ExportError(
                f"the disk holding {tree.outdir} is full; the export was stopped and nothing was left there"
            ) from exc
        reason = getattr(exc, "strerror", None) or str(exc)
        report.problems.append(ExportProblem(item.id, item.image_path, f"not exported: {reason}"))
        return
    info.images += 1
    report.items_exported += 1
    if shortened:
        report.shortened.append(ShortenedName(item.id, item.image_path, files[0], files))


def _dataset_is_reg(ds) -> bool:
    return bool((ds.trainer or {}).get("is_reg"))


def _without_unsupported_reg(items: list[ItemRow], fmt: str, ds, report: ExportReport) -> list[ItemRow]:
    """Items flagged ``reg`` where the format has no regularisation set: left out and
    reported (training on them as ordinary images would teach the model the wrong
    thing)."""
    if fmt in formats.REG_FORMATS or _dataset_is_reg(ds):
        return items
    kept = [item for item in items if not item.is_reg]
    if len(kept) < len(items):
        report.problems.append(
            ExportProblem(
                None,
                f"{len(items) - len(kept)} items flagged reg",
                f"not exported: {fmt} has no regularisation images; export them with --format "
                f"{', '.join(formats.REG_FORMATS)}, or clear the flag to train on them",
            )
        )
    return kept


def _folder_for(item, fmt, ds, options, folders, report) -> formats.FolderInfo:
    if item.is_reg and not _dataset_is_reg(ds):
        # a regularisation image of a training dataset: a reg folder of its own
        key = "\0reg/" + item.rel_dir
        info = folders.get(key)
        if info is None:
            info = folders[key] = formats.reg_folder(
                fmt, _folder_for(replace(item, flags=0), fmt, ds, options, folders, report), folders
            )
        return info
    info = folders.get(item.rel_dir)
    if info is None:
        info = formats.output_folder(fmt, item.rel_dir, ds.name, options.repeats)
        info.is_reg = _dataset_is_reg(ds)
        # two source folders whose safe names coincide share one output folder (and one
        # subset/entry: listing it twice would make the trainer read it twice)
        info = next((f for f in folders.values() if f.folder == info.folder), info)
        folders[item.rel_dir] = info
        if info.shortened:
            folder = "/".join(info.folder)
            report.shortened.append(ShortenedName(None, item.rel_dir or ds.name, folder, [folder]))
    return info


def _collect_row(fmt, item, built, rows, info, name, tree, placed, state) -> None:
    rel = tree.rel(info.folder, name)
    if fmt == "kohya-jsonl":
        # image_path relative to the subset's image_dir (OUTDIR), as sd-scripts joins it
        row = {"image_path": rel, **formats.metadata_entry(built)}
        if item.width and item.height:
            row["image_size"] = [item.width, item.height]  # sd-scripts then skips reading the size
        state.rows.append(row)
    elif fmt == "diffusers":
        row = {"file_name": rel, "text": built.text}
        for sub, text in trainers.item_captions(rows, state.builders).items():
            column = trainers.subtype_column(sub)
            state.columns.setdefault(column, None)
            row[column] = text
        if "control" in placed:
            row["conditioning_image_file_name"] = placed["control"]
        if "mask" in placed:
            row["mask_file_name"] = placed["mask"]
        state.rows.append(row)
    elif fmt == "diffusion-pipe" and built.text:
        texts = [built.text]
        for text in trainers.item_captions(rows, state.builders).values():
            if text not in texts:
                texts.append(text)
        state.captions.setdefault(info.folder, {})[name] = texts


def _plan_controls(items, fmt, ds, options, folders, report) -> None:
    """diffusion-pipe, musubi-tuner: mark the folders some of whose items have a control
    image (their items without one go to a sibling folder, see trainers.py)."""
    if (
        fmt not in formats.CONTROL_REQUIRED_FORMATS
        or not options.control_suffixes
        or not any(item.related_json for item in items)
    ):
        return
    for item in items:
        if masks.related_rel(item, options.control_suffixes):
            _folder_for(item, fmt, ds, options, folders, report).needs_control = True


def _control_folder(item, root, info, options, folders, report):
    found = masks.related_rel(item, options.control_suffixes)
    why = masks.related_source(root, *found)[1] if found else f"no {'/'.join(options.control_suffixes)} image"
    if not why:
        return info
    sibling = trainers.nocontrol_folder(info, folders)
    trainer = "diffusion-pipe" if options.format == "diffusion-pipe" else "musubi-tuner"
    report.problems.append(
        ExportProblem(
            item.id,
            item.image_path,
            f"{why} while other items of its folder have one; "
            f"the image goes to {'/'.join(sibling.folder)}/ without control images ({trainer} stops on an image without one)",
        )
    )
    return sibling


def _place_onetrainer_related(item, root, tree, info, stem, options, link_counts, report) -> dict[str, str]:
    """OneTrainer reads a mask as ``<stem>-masklabel.png`` and a conditioning image as
    ``<stem>-condlabel.png`` beside the image; other formats are converted to PNG."""
    placed = {}
    for kind, suffixes, tail in (
        ("control", options.control_suffixes, trainers.ONETRAINER_CONTROL),
        ("mask", options.mask_suffixes, trainers.ONETRAINER_MASK),
    ):
        found = masks.related_rel(item, suffixes)
        if found is None:
            continue
        src, why = masks.related_source(root, *found)
        if why or src is None:
            report.problems.append(ExportProblem(item.id, found[1], why or "not found"))
            continue
        name = stem + tail + ".png"
        if found[1].lower().endswith(".png"):
            how = tree.place_image(src, info.folder, name)
        else:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(src) as im:
                    im.save(tree.target(info.folder, name), format="PNG")
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                report.problems.append(
                    ExportProblem(item.id, found[1], f"{kind} image not exported: cannot convert it to PNG ({exc})")
                )
                continue
            how = "copy"
        link_counts[how] += 1
        setattr(info, "has_mask" if kind == "mask" else "has_control", True)
        placed[kind] = tree.rel(info.folder, name)
    return placed


def _place_related(item, root, tree, info, stem, options, link_counts, report) -> dict[str, str]:
    """ai-toolkit, diffusion-pipe, musubi-tuner, diffusers control/mask images: same
    stem as the target, in a parallel folder. Returns kind ("control" | "mask") → the
    placed file's path relative to OUTDIR."""
    placed = {}
    for kind, suffixes, folder, flag in (
        ("control", options.control_suffixes, info.control_folder, "has_control"),
        ("mask", options.mask_suffixes, info.mask_folder, "has_mask"),
    ):
        found = masks.related_rel(item, suffixes) if folder is not None else None
        if found is None:
            continue
        src, why = masks.related_source(root, *found)
        if why:
            report.problems.append(ExportProblem(item.id, found[1], why))
            continue
        name = _image_name(stem, found[1])
        how = tree.place_image(src, folder, name)
        link_counts[how] += 1
        setattr(info, flag, True)
        placed[kind] = tree.rel(folder, name)
    return placed


def _plan_masks(items, fmt, ds, options, folders, report) -> None:
    """kohya formats: before any file is placed, give the folders whose items have mask
    images a mask folder (see masks.py for the layout and why)."""
    if not options.mask_suffixes or not any(item.related_json for item in items):
        return  # no groups: the output is exactly what it was before masks
    if fmt in ("kohya-json", "kohya-jsonl", "musubi"):
        found = sum(1 for item in items if masks.related_rel(item, options.mask_suffixes))
        if found and fmt == "musubi":
            report.problems.append(
                ExportProblem(
                    None, f"{found} mask images", "not exported: musubi-tuner's image datasets take no mask folder"
                )
            )
        elif found:
            report.problems.append(
                ExportProblem(
                    None,
                    f"{found} mask images",
                    "not exported: sd-scripts' fine-tuning (metadata_file) subsets take no conditioning_data_dir; export as kohya-toml for --masked_loss",
                )
            )
        return
    if fmt not in formats.KOHYA_MASK_FORMATS:
        return
    masked = {}
    for item in items:
        info = _folder_for(item, fmt, ds, options, folders, report)
        if masks.related_rel(item, options.mask_suffixes):
            masked[id(info)] = info
    masks.plan_kohya_masks(masked.values(), folders.values())


def _kohya_mask(item, root, info, options, folders, report):
    """(source path, dataset-relative path) of the item's usable mask and the folder
    its image goes to. Without a usable mask the item is reported, and in kohya-toml it
    moves to a plain sibling folder: sd-scripts stops ("missing conditioning data")
    when an image of a conditioning_data_dir subset has no mask of its size."""
    found = masks.related_rel(item, options.mask_suffixes)
    if found is None:
        path, why = (
            item.image_path,
            f"no {'/'.join(options.mask_suffixes)} image while other items of {'/'.join(info.folder)} have one",
        )
    else:
        src, why = masks.related_source(root, *found)
        why = why or masks.mask_unusable(src, found[1], item.width, item.height)
        if not why:
            return (src, found[1]), info
        path, why = found[1], f"mask not exported: {why}"
    if options.format == "kohya-toml":
        info = masks.unmasked_folder(info, folders)
        where = f"the image goes to {'/'.join(info.folder)}/, a subset without conditioning_data_dir (plain loss)"
    else:
        where = "the image is exported without one (sd-scripts stops with 'missing conditioning data' if this folder's masks are its conditioning_data_dir)"
    report.problems.append(ExportProblem(item.id, path, f"{why}; {where}"))
    return None, info


def _place_kohya_mask(tree, info, name, stem, mask, link_counts, image_how) -> str:
    """The mask under the exported image's stem (its path relative to OUTDIR is
    returned); if it cannot be placed the image is taken back, so the masked subset
    never holds an image without its mask."""
    src, rel = mask
    mask_name = _image_name(stem, rel)
    try:
        how = tree.place_image(src, info.mask_folder, mask_name)
    except BaseException:
        os.unlink(tree.target(info.folder, name))
        link_counts[image_how] -= 1
        raise
    link_counts[how] += 1
    info.has_mask = True
    return tree.rel(info.mask_folder, mask_name)
