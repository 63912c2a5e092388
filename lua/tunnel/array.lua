-- tunnel.array: the module name for tunnel.Array, as the original's
-- classes have one each (require('tunnel.vector'), ...).
-- require('tunnel.array') returns the class (the same object as
-- tunnel.Array: a callable table with Array.frombytes) and, like
-- require('tunnel'), sets the global `tunnel`. Block threads preload this
-- name in C (src/lua/lblock.c); the module itself enters the class in
-- package.loaded under this name (src/lua/larray.c), so that the codec can
-- send it by name.
return require('tunnel').Array
