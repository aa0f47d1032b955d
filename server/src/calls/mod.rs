//! Calls: ICE server configuration for WebRTC clients. (Rooms, signaling and direct calls build on
//! the WebSocket next.)

pub mod ice;
