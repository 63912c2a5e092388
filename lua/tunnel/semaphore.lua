-- tunnel.semaphore: the module name for tunnel.Semaphore, as the original tunnel's
-- names for its classes. require('tunnel.semaphore') returns the class (the
-- same object as tunnel.Semaphore) and, like require('tunnel'), sets the global
-- `tunnel`. Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Semaphore
