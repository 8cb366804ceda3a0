"""`tkds serve`: a web page and JSON API that predict how a video will do, from one bench run."""
