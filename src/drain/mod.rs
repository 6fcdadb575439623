//! Draining of request bodies the handler left unread.
