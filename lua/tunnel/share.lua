-- tunnel.share: the original tunnel's module name for tunnel.Share.
-- require('tunnel.share') returns the class (the same object as
-- tunnel.Share) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Share
