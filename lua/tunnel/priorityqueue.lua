-- tunnel.priorityqueue: the module name for tunnel.PriorityQueue, as the
-- original's classes have one each (require('tunnel.vector'), ...).
-- require('tunnel.priorityqueue') returns the class (the same object as
-- tunnel.PriorityQueue) and, like require('tunnel'), sets the global
-- `tunnel`. Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').PriorityQueue
