"""batchgen: run large batches of paid image-to-video generations, resumably."""

from .errors import BatchgenError
from .jobs import JobSpec
from .lifecycle import JobStatus
from .models import BUILTIN_MODELS, DEFAULT_MODEL, ModelSpec, ModelTable

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "BatchgenError", "JobSpec", "JobStatus", "ModelSpec", "ModelTable"]
__version__ = "0.1.0"
