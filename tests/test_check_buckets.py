"""Buckets as the trainers assign them: size -> bucket tables computed by running the
trainers' own code, extracted verbatim from these commits, on the sizes below:

- kohya-ss/sd-scripts 48d368fa557731ad0488c07304dfeba8c07910eb, library/model_util.py
  make_bucket_resolutions + library/train_util.py BucketManager (make_buckets, select_bucket,
  round_to_steps); entries "W x H > bucket ~ resized_size" as select_bucket returns them.
- ostris/ai-toolkit 27a03a91f23eb1b757d5ec2e80ee3e129cfcc350, toolkit/buckets.py
  get_bucket_for_image_size (entries "W x H > bucket").
- tdrussell/diffusion-pipe 8f83dbf25d03219df705570ec03e62be04bc402f, utils/dataset.py
  dedup_and_sort(np.geomspace(min_ar, max_ar, num_ar_buckets)), _find_closest_ar_bucket and
  ARBucketDataset.cache_latents' size with utils/common.py round_to_nearest_multiple.
- Nerogar/OneTrainer 23df3832e8f213d64c337e39f9365ba46e99fed0 -> Nerogar/mgds
  3a6994ad18a490acc4f3876658167525b7d88da7, src/mgds/pipelineModules/AspectBucketing.py
  (start + get_item with the pipeline plumbing stubbed); "W x H > crop ~ scale resolution".
"""

from __future__ import annotations

import pytest

from sushitui.check.buckets import (
    kohya_bucket_resolutions,
    make_plan,
    onetrainer_bucket_resolutions,
)

TABLES = {
    "kohya reso=1024 no_upscale=False min=256 max=1024 steps=64": (
        "1024x1024>1024x1024~1024x1024 512x512>1024x1024~1024x1024 768x512>1024x704~1056x704 "
        "512x768>704x1024~704x1056 1920x1080>1024x576~1024x576 1080x1920>576x1024~576x1024 "
        "4000x3000>1024x768~1024x768 3000x4000>768x1024~768x1024 640x480>1024x768~1024x768 "
        "300x200>1024x704~1056x704 1200x800>1024x704~1056x704 2048x512>1024x256~1024x256 "
        "512x2048>256x1024~256x1024 1000x1000>1024x1024~1024x1024 1023x1025>1024x1024~1024x1026 "
        "5000x1000>1024x256~1280x256 333x777>448x1024~448x1045 1536x1024>1024x704~1056x704 "
        "832x1216>704x1024~704x1029 720x1280>576x1024~576x1024 3024x4032>768x1024~768x1024 "
        "100x100>1024x1024~1024x1024 2560x1440>1024x576~1024x576 800x600>1024x768~1024x768 "
        "1600x900>1024x576~1024x576 "
    ),
    "kohya reso=1024 no_upscale=True min=256 max=1024 steps=64": (
        "1024x1024>1024x1024~1024x1024 512x512>512x512~512x512 768x512>768x512~768x512 "
        "512x768>512x768~512x768 1920x1080>1344x768~1365x768 1080x1920>768x1344~768x1365 "
        "4000x3000>1088x832~1109x832 3000x4000>832x1088~832x1109 640x480>640x448~640x480 "
        "300x200>256x192~300x200 1200x800>1152x768~1200x800 2048x512>2048x512~2048x512 "
        "512x2048>512x2048~512x2048 1000x1000>960x960~1000x1000 1023x1025>960x1024~1023x1025 "
        "5000x1000>2240x448~2240x448 333x777>320x768~333x777 1536x1024>1216x832~1248x832 "
        "832x1216>832x1216~832x1216 720x1280>704x1280~720x1280 3024x4032>832x1088~832x1109 "
        "100x100>64x64~100x100 2560x1440>1344x768~1365x768 800x600>768x576~800x600 "
        "1600x900>1344x768~1365x768 "
    ),
    "kohya reso=512 no_upscale=False min=256 max=1024 steps=64": (
        "1024x1024>512x512~512x512 512x512>512x512~512x512 768x512>640x384~640x427 "
        "512x768>384x640~427x640 1920x1080>640x384~683x384 1080x1920>384x640~384x683 "
        "4000x3000>576x448~597x448 3000x4000>448x576~448x597 640x480>576x448~597x448 "
        "300x200>640x384~640x427 1200x800>640x384~640x427 2048x512>1024x256~1024x256 "
        "512x2048>256x1024~256x1024 1000x1000>512x512~512x512 1023x1025>512x512~512x513 "
        "5000x1000>1024x256~1280x256 333x777>320x768~329x768 1536x1024>640x384~640x427 "
        "832x1216>384x640~438x640 720x1280>384x640~384x683 3024x4032>448x576~448x597 "
        "100x100>512x512~512x512 2560x1440>640x384~683x384 800x600>576x448~597x448 "
        "1600x900>640x384~683x384 "
    ),
    "kohya reso=1024 no_upscale=False min=256 max=2048 steps=64": (
        "1024x1024>1024x1024~1024x1024 512x512>1024x1024~1024x1024 768x512>1216x832~1248x832 "
        "512x768>832x1216~832x1248 1920x1080>1344x768~1365x768 1080x1920>768x1344~768x1365 "
        "4000x3000>1152x896~1195x896 3000x4000>896x1152~896x1195 640x480>1152x896~1195x896 "
        "300x200>1216x832~1248x832 1200x800>1216x832~1248x832 2048x512>2048x512~2048x512 "
        "512x2048>512x2048~512x2048 1000x1000>1024x1024~1024x1024 1023x1025>1024x1024~1024x1026 "
        "5000x1000>2048x384~2048x410 333x777>640x1536~658x1536 1536x1024>1216x832~1248x832 "
        "832x1216>832x1216~832x1216 720x1280>768x1344~768x1365 3024x4032>896x1152~896x1195 "
        "100x100>1024x1024~1024x1024 2560x1440>1344x768~1365x768 800x600>1152x896~1195x896 "
        "1600x900>1344x768~1365x768 "
    ),
    "kohya reso=768 no_upscale=True min=256 max=1024 steps=32": (
        "1024x1024>768x768~768x768 512x512>512x512~512x512 768x512>768x512~768x512 "
        "512x768>512x768~512x768 1920x1080>1024x576~1024x576 1080x1920>576x1024~576x1024 "
        "4000x3000>864x640~864x648 3000x4000>640x864~648x864 640x480>640x480~640x480 "
        "300x200>288x192~300x200 1200x800>896x608~912x608 2048x512>1536x384~1536x384 "
        "512x2048>384x1536~384x1536 1000x1000>768x768~768x768 1023x1025>736x736~736x737 "
        "5000x1000>1600x320~1600x320 333x777>320x768~333x777 1536x1024>896x608~912x608 "
        "832x1216>608x864~608x889 720x1280>576x1024~576x1024 3024x4032>640x864~648x864 "
        "100x100>96x96~100x100 2560x1440>1024x576~1024x576 800x600>800x576~800x600 "
        "1600x900>1024x576~1024x576 "
    ),
    "ai-toolkit resolution=1024 bucket_tolerance=64": (
        "1024x1024>1024x1024 512x512>512x512 768x512>768x512 512x768>512x768 1920x1080>1344x768 "
        "1080x1920>768x1344 4000x3000>1152x896 3000x4000>896x1152 640x480>640x448 300x200>320x192 "
        "1200x800>1152x832 2048x512>2048x512 512x2048>512x2048 1000x1000>960x1024 1023x1025>1024x1024 "
        "5000x1000>2304x448 333x777>320x832 1536x1024>1216x832 832x1216>832x1216 720x1280>704x1280 "
        "3024x4032>896x1152 100x100>64x128 2560x1440>1344x768 800x600>832x576 1600x900>1344x768 "
    ),
    "ai-toolkit resolution=512 bucket_tolerance=64": (
        "1024x1024>512x512 512x512>512x512 768x512>576x448 512x768>448x576 1920x1080>640x384 "
        "1080x1920>384x640 4000x3000>576x448 3000x4000>448x576 640x480>576x448 300x200>320x192 "
        "1200x800>576x448 2048x512>1024x256 512x2048>256x1024 1000x1000>512x512 1023x1025>512x512 "
        "5000x1000>1152x192 333x777>320x768 1536x1024>576x448 832x1216>448x576 720x1280>384x640 "
        "3024x4032>448x576 100x100>64x128 2560x1440>640x384 800x600>576x448 1600x900>640x384 "
    ),
    "ai-toolkit resolution=768 bucket_tolerance=32": (
        "1024x1024>768x768 512x512>512x512 768x512>768x512 512x768>512x768 1920x1080>1024x576 "
        "1080x1920>576x1024 4000x3000>864x672 3000x4000>672x864 640x480>640x480 300x200>320x192 "
        "1200x800>960x608 2048x512>1536x384 512x2048>384x1536 1000x1000>768x768 1023x1025>768x768 "
        "5000x1000>1728x320 333x777>320x800 1536x1024>960x608 832x1216>608x960 720x1280>576x1024 "
        "3024x4032>672x864 100x100>96x96 2560x1440>1024x576 800x600>800x608 1600x900>1024x576 "
    ),
    "diffusion-pipe resolution=1024 min_ar=0.5 max_ar=2.0 num_ar_buckets=7 round=16": (
        "1024x1024>1024x1024 512x512>1024x1024 768x512>1296x816 512x768>816x1296 1920x1080>1296x816 "
        "1080x1920>816x1296 4000x3000>1152x912 3000x4000>912x1152 640x480>1152x912 300x200>1296x816 "
        "1200x800>1296x816 2048x512>1456x720 512x2048>720x1456 1000x1000>1024x1024 1023x1025>1024x1024 "
        "5000x1000>1456x720 333x777>720x1456 1536x1024>1296x816 832x1216>816x1296 720x1280>816x1296 "
        "3024x4032>912x1152 100x100>1024x1024 2560x1440>1296x816 800x600>1152x912 1600x900>1296x816 "
    ),
    "diffusion-pipe resolution=512 min_ar=0.5 max_ar=2.0 num_ar_buckets=7 round=32": (
        "1024x1024>512x512 512x512>512x512 768x512>640x416 512x768>416x640 1920x1080>640x416 "
        "1080x1920>416x640 4000x3000>576x448 3000x4000>448x576 640x480>576x448 300x200>640x416 "
        "1200x800>640x416 2048x512>736x352 512x2048>352x736 1000x1000>512x512 1023x1025>512x512 "
        "5000x1000>736x352 333x777>352x736 1536x1024>640x416 832x1216>416x640 720x1280>416x640 "
        "3024x4032>448x576 100x100>512x512 2560x1440>640x416 800x600>576x448 1600x900>640x416 "
    ),
    "onetrainer resolution=1024 quantization=64": (
        "1024x1024>1024x1024~1024x1024 512x512>1024x1024~1024x1024 768x512>1280x832~1280x853 "
        "512x768>832x1280~853x1280 1920x1080>1344x768~1365x768 1080x1920>768x1344~768x1365 "
        "4000x3000>1152x896~1195x896 3000x4000>896x1152~896x1195 640x480>1152x896~1195x896 "
        "300x200>1280x832~1280x853 1200x800>1280x832~1280x853 2048x512>2048x512~2048x512 "
        "512x2048>512x2048~512x2048 1000x1000>1024x1024~1024x1024 1023x1025>1024x1024~1024x1026 "
        "5000x1000>2048x512~2560x512 333x777>640x1600~686x1600 1536x1024>1280x832~1280x853 "
        "832x1216>832x1280~876x1280 720x1280>768x1344~768x1365 3024x4032>896x1152~896x1195 "
        "100x100>1024x1024~1024x1024 2560x1440>1344x768~1365x768 800x600>1152x896~1195x896 "
        "1600x900>1344x768~1365x768 "
    ),
    "onetrainer resolution=512 quantization=8": (
        "1024x1024>512x512~512x512 512x512>512x512~512x512 768x512>624x416~624x416 "
        "512x768>416x624~416x624 1920x1080>680x384~683x384 1080x1920>384x680~384x683 "
        "4000x3000>576x456~608x456 3000x4000>456x576~456x608 640x480>576x456~608x456 "
        "300x200>624x416~624x416 1200x800>624x416~624x416 2048x512>1024x256~1024x256 "
        "512x2048>256x1024~256x1024 1000x1000>512x512~512x512 1023x1025>512x512~512x513 "
        "5000x1000>1024x256~1280x256 333x777>320x808~346x808 1536x1024>624x416~624x416 "
        "832x1216>416x624~427x624 720x1280>384x680~384x683 3024x4032>456x576~456x608 "
        "100x100>512x512~512x512 2560x1440>680x384~683x384 800x600>576x456~608x456 "
        "1600x900>680x384~683x384 "
    ),
}

PLANS = {
    "kohya reso=1024 no_upscale=False min=256 max=1024 steps=64": ("kohya", 1024, {}),
    "kohya reso=1024 no_upscale=True min=256 max=1024 steps=64": ("kohya", 1024, {"no_upscale": True}),
    "kohya reso=512 no_upscale=False min=256 max=1024 steps=64": ("kohya", 512, {}),
    "kohya reso=1024 no_upscale=False min=256 max=2048 steps=64": ("kohya", 1024, {"max_bucket_reso": 2048}),
    "kohya reso=768 no_upscale=True min=256 max=1024 steps=32": (
        "kohya",
        768,
        {"no_upscale": True, "bucket_reso_steps": 32},
    ),
    "ai-toolkit resolution=1024 bucket_tolerance=64": ("ai-toolkit", 1024, {}),
    "ai-toolkit resolution=512 bucket_tolerance=64": ("ai-toolkit", 512, {}),
    "ai-toolkit resolution=768 bucket_tolerance=32": ("ai-toolkit", 768, {"bucket_tolerance": 32}),
    "diffusion-pipe resolution=1024 min_ar=0.5 max_ar=2.0 num_ar_buckets=7 round=16": ("diffusion-pipe", 1024, {}),
    "diffusion-pipe resolution=512 min_ar=0.5 max_ar=2.0 num_ar_buckets=7 round=32": (
        "diffusion-pipe",
        512,
        {"round_to_multiple": 32},
    ),
    "onetrainer resolution=1024 quantization=64": ("onetrainer", 1024, {}),
    "onetrainer resolution=512 quantization=8": ("onetrainer", 512, {"quantization": 8}),
}


def _pair(text: str) -> tuple[int, int]:
    w, h = text.split("x")
    return int(w), int(h)


def _entries(key: str):
    for entry in "".join(TABLES[key]).split():
        size, _, rest = entry.partition(">")
        bucket, _, resized = rest.partition("~")
        yield _pair(size), _pair(bucket), (_pair(resized) if resized else None)


@pytest.mark.parametrize("key", sorted(TABLES))
def test_every_size_lands_in_the_bucket_the_trainer_code_chose(key):
    trainer, resolution, options = PLANS[key]
    plan = make_plan(trainer, resolution, **options)
    wrong = []
    for (w, h), bucket, resized in _entries(key):
        got = plan.place(w, h)
        if got.bucket != bucket or (resized is not None and got.resized != resized):
            wrong.append(f"{w}x{h}: got {got.bucket} ~ {got.resized}, trainer {bucket} ~ {resized}")
    assert wrong == []


def test_kohya_bucket_list_for_sdxl_settings():
    # sdxl_train_network with --resolution 1024 --max_bucket_reso 2048: the familiar list
    resos = kohya_bucket_resolutions((1024, 1024), 256, 2048, 64)
    for bucket in [(1024, 1024), (832, 1216), (1216, 832), (896, 1152), (768, 1344), (640, 1536), (512, 2048)]:
        assert bucket in resos
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 for w, h in resos)


def test_onetrainer_has_the_nine_aspects_both_ways():
    resos = onetrainer_bucket_resolutions(1024, 64)
    assert (1024, 1024) in resos and len(resos) == 17  # 1:1 once, 8 others in both orientations


def test_scale_and_crop_share_say_what_happens_to_the_pixels():
    kohya = make_plan("kohya", 1024)
    small = kohya.place(300, 200)  # upscaled into 1024x704 via 1056x704
    assert small.scale == pytest.approx(704 / 200)
    assert small.cropped == pytest.approx(1 - (1024 * 704) / (1056 * 704))
    exact = kohya.place(1024, 1024)
    assert exact.scale == 1 and exact.cropped == 0
    no_up = make_plan("kohya", 1024, no_upscale=True).place(300, 200)
    assert no_up.scale == 1 and no_up.bucket == (256, 192)


def test_unknown_trainer_and_out_of_range_resolution_are_clear_errors():
    with pytest.raises(ValueError, match="unknown trainer"):
        make_plan("everydream", 1024)
    with pytest.raises(ValueError, match="max_bucket_reso"):
        make_plan("kohya", 2048)  # max_bucket_reso 1024 by default: kohya refuses too


@pytest.mark.parametrize("key", sorted(PLANS))
def test_the_column_form_answers_exactly_like_the_line_by_line_form(key):
    """check places 100k images with place_many (numpy); it must agree with place, the
    transcription the tables above test, on sizes of every kind."""
    import numpy as np

    trainer, resolution, options = PLANS[key]
    plan = make_plan(trainer, resolution, **options)
    rng = np.random.default_rng(7)
    w = np.r_[rng.integers(1, 7000, 3000), [64, 1024, 832, 1216, 1, 9999], rng.integers(1, 17, 500) * 64]
    h = np.r_[rng.integers(1, 7000, 3000), [64, 1024, 1216, 832, 9999, 1], rng.integers(1, 17, 500) * 64]
    many = plan.place_many(w, h)
    wrong = [(int(a), int(b)) for i, (a, b) in enumerate(zip(w, h)) if plan.place(int(a), int(b)) != many.at(i)]
    assert wrong == []
