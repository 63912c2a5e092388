-- tunnel.counter: the original tunnel's module name for tunnel.Counter.
-- require('tunnel.counter') returns the class (the same object as
-- tunnel.Counter) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Counter
