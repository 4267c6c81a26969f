"""Image-quality metrics for Deep OT: fidelity (PSNR, SSIM), distribution distances
(patch SWD, patch Fréchet distance) and no-reference quality (NIQE). Network-free."""
from .fidelity import psnr, rgb_to_y, ssim
from .matlab_resize import imresize
from .niqe import niqe
from .patch_fd import frechet_distance, patch_frechet_distance
from .pyramid import laplacian_pyramid
from .swd import sliced_wasserstein_patches

__all__ = ["psnr", "ssim", "rgb_to_y", "imresize", "niqe", "frechet_distance", "patch_frechet_distance",
           "laplacian_pyramid", "sliced_wasserstein_patches"]
