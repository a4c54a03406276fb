"""Print what CMake needs to know about the installed torch, one KEY=VALUE per line.

CMake runs this with the interpreter that will import the extension, so the
extension is compiled against exactly that torch (headers, libraries, C++ ABI).
"""
import os

import torch
from torch.utils import cpp_extension

root = os.path.dirname(torch.__file__)
print(f"TORCH_VERSION={torch.__version__}")
print(f"TORCH_CUDA_VERSION={torch.version.cuda or ''}")
# GPUs visible to this torch (CUDA_VISIBLE_DEVICES respected): GENAD_CUDA=AUTO builds the CUDA ops only when > 0.
# device_count() asks the driver (NVML) without creating a context; 0 where there is no driver.
print(f"TORCH_CUDA_DEVICES={torch.cuda.device_count() if torch.version.cuda else 0}")
print(f"TORCH_ROOT={root}")
print(f"TORCH_LIB_DIR={os.path.join(root, 'lib')}")
print(f"TORCH_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}")
# '|' separates paths here; CMakeLists turns it into a CMake list.
print(f"TORCH_INCLUDE_DIRS={'|'.join(cpp_extension.include_paths())}")
