"""Drawing the training boxes: a local web page over the user's images, saving a box CSV that `train --boxes` reads.

`images` lists the cases and serves their slices in source pixels, `box_store` keeps
the CSV, `preview` prompts the backbone with a drawn box, `overlay` reads `predict`
outputs for review, and `server` is the HTTP front of all four (standard library
only: one local user, a few JSON and binary routes, assets shipped in `static/`).
"""
