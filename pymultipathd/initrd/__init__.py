"""The initramfs and the booted root classify paths alike (`pymultipath verify`).

archive.py reads an initramfs image in memory (concatenated cpio archives, compressed or not, as the kernel
unpacks them); inputs.py gathers what decides a classification from a file tree (the running root or such an
image); compare.py compares two of those, pure, and runs the classifier over the present paths to say what
each difference changes. Nothing here is imported by `pymultipath -u`.
"""
