"""The verb that draws the training boxes: `annotate` serves a page over the images and saves a box CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from medprompt.cli.options import Verb, add_backbone, add_device

if TYPE_CHECKING:
    from medprompt.annotate.images import CaseImages


def cmd_annotate(args: argparse.Namespace) -> None:
    import webbrowser

    from medprompt.annotate.box_store import BoxStore
    from medprompt.annotate.overlay import PredictionOverlay
    from medprompt.annotate.preview import MaskPreview
    from medprompt.annotate.server import Session, make_server
    from medprompt.common.device import resolve_device

    images = case_images(args.input, args.label)
    session = Session(images, BoxStore(args.boxes))
    if args.preview:
        session.preview = MaskPreview(args.backbone, args.checkpoint, str(resolve_device(args.device)), args.engine)
    if args.predictions is not None:
        session.overlay = PredictionOverlay(args.predictions, images)
    server = make_server(session, args.host, args.port)
    print(session.url, flush=True)
    print(f"{len(images.cases)} cases; boxes are saved to {args.boxes}; Ctrl-C stops the server", flush=True)
    if args.browser:
        webbrowser.open(session.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        _, boxes = session.store.snapshot()
        print(f"stopped; {sum(len(b) for b in boxes.values())} boxes on {len(boxes)} slices in {args.boxes}")
    finally:
        server.server_close()


def case_images(path: Path, label: int | None) -> CaseImages:
    """The cases of INPUT: a preprocessed dataset, a folder of images (the folder adapter's layout), or one image."""
    from medprompt.annotate.images import CaseImage, CaseImages
    from medprompt.common.errors import MedpromptError
    from medprompt.data.dataset import MANIFEST
    from medprompt.data.dicom_series import is_dicom_series
    from medprompt.data.volume_io import strip_suffix
    from preprocessing.folder import find_cases

    if (path / MANIFEST).is_file():
        images = CaseImages.from_dataset(path)
    elif is_dicom_series(path) or path.is_file():
        images = CaseImages([CaseImage(strip_suffix(path), path)])
    elif path.is_dir():
        cases, _ = find_cases(path, {})
        if not cases:
            raise MedpromptError(f"{path}: no images (NIfTI, MHD, PNG or DICOM series folders) in it")
        images = CaseImages([CaseImage(c.case, c.image_path, c.label_path) for c in cases])
    else:
        raise MedpromptError(f"{path}: no such file or folder")
    if label is not None:
        images.target_label = label
    return images


def add_annotate(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, metavar="INPUT",
                   help="a preprocessed dataset folder, a folder of images (NIfTI, MHD, PNG, DICOM series folders; "
                        "NAME_gt.* label maps beside them are used for --predictions' Dice), or one image")
    p.add_argument("--boxes", type=Path, required=True,
                   help="the box CSV to write (created if absent, its boxes shown if present): case, slice_index, "
                        "x_min, y_min, x_max, y_max in source pixels, what `medprompt train --boxes` reads")
    p.add_argument("--port", type=int, default=8765, help="port to serve on (default: 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: 127.0.0.1, this machine only); another one, e.g. 0.0.0.0 to "
                        "annotate from another machine, adds a secret token to the printed URL")
    p.add_argument("--browser", action=argparse.BooleanOptionalAction, default=True,
                   help="open the page in the default browser (default: yes; --no-browser on a server)")
    p.add_argument("--preview", action=argparse.BooleanOptionalAction, default=True,
                   help="show the backbone's mask of the boxes as they are drawn (default: yes; the backbone loads "
                        "on the first box)")
    p.add_argument("--predictions", type=Path, default=None, metavar="PRED",
                   help="a `medprompt predict` output folder to show over the images, for review, with each slice's "
                        "Dice where the case has a label map")
    p.add_argument("--label", type=int, default=None,
                   help="the label value of the structure in the label maps, for --predictions' Dice (default: the "
                        "dataset's target, else 1)")
    add_backbone(p)
    add_device(p)


VERBS = [
    Verb("annotate", cmd_annotate, add_annotate,
         "Draw the training boxes on your images in a local web page; they are saved at once to a CSV for "
         "`medprompt train --boxes`.",
         "example: medprompt annotate images/ --boxes boxes.csv\n"
         "         medprompt preprocess folder images/ data/mine && medprompt embed data/mine\n"
         "         medprompt train data/mine --boxes boxes.csv --out runs/mine\n"
         "review:  medprompt annotate images/ --boxes boxes.csv --predictions predictions/mine"),
]
