"""The tasks: one module each (famevil.tasks.base says what a task holds), registered here in the order
every table and loop shows them."""

from famevil.tasks import fic, scr, tgir, xmr
from famevil.tasks.base import TASKS, Task, find_task, register, task_names, unregister

for _task in (xmr.TASK, tgir.TASK, scr.TASK, fic.TASK):
    register(_task)

__all__ = ["TASKS", "Task", "find_task", "register", "task_names", "unregister"]
