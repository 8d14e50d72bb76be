"""DeepMultiBox: scalable, class-agnostic object localization with one deep network.

Erhan, Szegedy, Toshev, Anguelov. *Scalable Object Detection using Deep Neural Networks*, CVPR 2014.
Inside the library every box is xyxy, normalized to [0, 1] of the square crop the network sees;
readers and outputs convert at the edges with the functions in :mod:`multibox.boxes`.
"""

__version__ = "0.1.0"
