"""warp_utils: the tested helpers behind the WARP course notebooks."""
