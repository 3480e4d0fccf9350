"""Offline training of the edge models (not used online): data and augmentation, the
trainer, training clips (moving-camera stills, pseudo-labelled videos), evaluation and
checkpoint export. Import from the submodules: `edge.training.trainer`, `.clips`,
`.evaluation`."""
