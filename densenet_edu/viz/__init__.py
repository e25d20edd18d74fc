"""Schematics of a dense block and of a whole DenseNet, drawn from the modules themselves.

The paper's Figure 1 (a dense block) and Figure 2 (a DenseNet of several blocks) are the
clearest mental model of the architecture. These functions draw both for *any* block or
model of the package: every label (channel counts, layer counts, growth rate, compression,
kernel sizes, feature-map sizes) is read from the modules, never typed in, so a schematic
cannot drift from the code it shows.

- `draw_dense_block` (``viz.dense_block``): the feature maps x_0, ..., x_L as lines, each
  layer H_l as a box with the width k0 + k(l - 1) it reads, and a dot for every
  connection: the maps a layer taps are concatenated into its input.
- `draw_densenet` (``viz.network``): stem, dense blocks (drawn with heights proportional
  to their channel counts, so their growth and the transitions' compression show),
  transitions, pooling and classifier, with the feature-map size of every stage, which
  `network_stages` (``viz.stages``) reads from the model.

matplotlib only; both return the `Axes` they drew on.
"""

from densenet_edu.viz.dense_block import draw_dense_block
from densenet_edu.viz.network import draw_densenet
from densenet_edu.viz.stages import Stage as Stage
from densenet_edu.viz.stages import network_stages

__all__ = ["draw_dense_block", "draw_densenet", "network_stages"]
