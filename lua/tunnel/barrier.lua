-- tunnel.barrier: the module name for tunnel.Barrier, as the original tunnel's
-- names for its classes. require('tunnel.barrier') returns the class (the
-- same object as tunnel.Barrier) and, like require('tunnel'), sets the global
-- `tunnel`. Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Barrier
