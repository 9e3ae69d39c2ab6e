"""Teachers: frozen feature extractors behind one interface, a registry and `build_teacher`."""

from aft.teachers.base import (
    TEACHER_PREFIXES,
    TEACHERS,
    CallableTeacher,
    ModuleTeacher,
    Teacher,
    build_teacher,
    images_to_tensor,
    teacher_slug,
)

__all__ = [
    "TEACHERS",
    "TEACHER_PREFIXES",
    "CallableTeacher",
    "ModuleTeacher",
    "Teacher",
    "build_teacher",
    "images_to_tensor",
    "teacher_slug",
]
