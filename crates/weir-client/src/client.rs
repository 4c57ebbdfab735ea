//! The cluster handle shared by producers, consumers and admin clients.
