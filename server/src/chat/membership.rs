//! Who may change a group and what each change does to its members: pure rules over the member
//! list as the writer read it in the change's own transaction, with their own tests.

use serde::Serialize;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::error::{AppError, ErrorCode};

/// A member's standing in a group, in increasing power. Direct conversations have two members.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, TS, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    /// Adds and removes members, renames the group.
    Admin,
    /// One per group: everything an admin does, and sets roles.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(stored: &str) -> Self {
        match stored {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            _ => Self::Member,
        }
    }
}

/// A current member, as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub user_id: i64,
    pub role: Role,
    /// When they joined: the oldest admin (or member) inherits a group its owner leaves.
    pub joined_seq: i64,
}

/// A change to a conversation, asked for by an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new group: the actor owns it, `members` join it.
    Create {
        members: Vec<i64>,
    },
    Add {
        users: Vec<i64>,
    },
    Remove {
        user: i64,
    },
    Leave,
    SetRole {
        user: i64,
        role: Role,
    },
    Rename {
        title: String,
    },
}

/// What a change does to the member rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberUpdate {
    Join { user: i64, role: Role },
    Leave { user: i64 },
    SetRole { user: i64, role: Role },
}

fn forbidden(message: &str) -> AppError {
    AppError::new(ErrorCode::Forbidden, message)
}

/// Checks `change` by `actor` against the current `members` (empty for `Create`) and says what it
/// does. `is_group`: direct conversations keep their two members.
pub fn plan(
    change: &Change,
    actor: i64,
    members: &[Member],
    is_group: bool,
    max_members: usize,
) -> Result<Vec<MemberUpdate>, AppError> {
    if let Change::Create { members: invited } = change {
        let mut updates = vec![MemberUpdate::Join {
            user: actor,
            role: Role::Owner,
        }];
        for &user in invited {
            let new = updates
                .iter()
                .all(|u| !matches!(u, MemberUpdate::Join { user: u, .. } if *u == user));
            if new {
                updates.push(MemberUpdate::Join {
                    user,
                    role: Role::Member,
                });
            }
        }
        if updates.len() > max_members {
            return Err(group_full(max_members));
        }
        return Ok(updates);
    }
    let Some(me) = members.iter().find(|m| m.user_id == actor) else {
        return Err(AppError::new(
            ErrorCode::ConversationNotFound,
            "no such conversation of yours",
        ));
    };
    if !is_group {
        return Err(AppError::new(
            ErrorCode::NotAGroup,
            "a direct conversation keeps its two members and has no title",
        ));
    }
    let member = |user: i64| members.iter().find(|m| m.user_id == user);
    match change {
        Change::Create { .. } => unreachable!("handled above"),
        Change::Add { users } => {
            if me.role < Role::Admin {
                return Err(forbidden("only the group's owner and admins add members"));
            }
            let mut updates: Vec<MemberUpdate> = Vec::new();
            for &user in users {
                let listed = updates
                    .iter()
                    .any(|u| matches!(u, MemberUpdate::Join { user: u, .. } if *u == user));
                if member(user).is_none() && !listed {
                    updates.push(MemberUpdate::Join {
                        user,
                        role: Role::Member,
                    });
                }
            }
            if members.len() + updates.len() > max_members {
                return Err(group_full(max_members));
            }
            Ok(updates)
        }
        Change::Remove { user } if *user == actor => {
            plan(&Change::Leave, actor, members, is_group, max_members)
        }
        Change::Remove { user } => {
            if me.role < Role::Admin {
                return Err(forbidden(
                    "only the group's owner and admins remove members",
                ));
            }
            let target = member(*user).ok_or_else(not_a_member)?;
            if target.role >= me.role {
                return Err(forbidden(
                    "an admin removes members only; the owner removes admins too",
                ));
            }
            Ok(vec![MemberUpdate::Leave { user: *user }])
        }
        Change::Leave => {
            let mut updates = vec![MemberUpdate::Leave { user: actor }];
            if me.role == Role::Owner {
                // The group passes to its oldest admin, or else its oldest member.
                let heir = members
                    .iter()
                    .filter(|m| m.user_id != actor)
                    .max_by_key(|m| (m.role, std::cmp::Reverse(m.joined_seq)));
                if let Some(heir) = heir {
                    updates.push(MemberUpdate::SetRole {
                        user: heir.user_id,
                        role: Role::Owner,
                    });
                }
            }
            Ok(updates)
        }
        Change::SetRole { user, role } => {
            if me.role != Role::Owner {
                return Err(forbidden("only the group's owner sets roles"));
            }
            if *user == actor {
                return Err(forbidden(
                    "the owner hands the group to another member (role \"owner\") instead",
                ));
            }
            let target = member(*user).ok_or_else(not_a_member)?;
            if target.role == *role {
                return Ok(Vec::new());
            }
            let mut updates = vec![MemberUpdate::SetRole {
                user: *user,
                role: *role,
            }];
            if *role == Role::Owner {
                updates.push(MemberUpdate::SetRole {
                    user: actor,
                    role: Role::Admin,
                });
            }
            Ok(updates)
        }
        Change::Rename { .. } => {
            if me.role < Role::Admin {
                return Err(forbidden("only the group's owner and admins rename it"));
            }
            Ok(Vec::new())
        }
    }
}

fn not_a_member() -> AppError {
    AppError::new(ErrorCode::MemberNotFound, "that user is not a member")
}

fn group_full(max: usize) -> AppError {
    AppError::new(
        ErrorCode::GroupFull,
        format!("a group has at most {max} members"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: i64 = 1;
    const ADMIN: i64 = 2;
    const MEMBER: i64 = 3;
    const OUTSIDER: i64 = 9;

    fn group() -> Vec<Member> {
        vec![
            Member {
                user_id: OWNER,
                role: Role::Owner,
                joined_seq: 10,
            },
            Member {
                user_id: MEMBER,
                role: Role::Member,
                joined_seq: 11,
            },
            Member {
                user_id: ADMIN,
                role: Role::Admin,
                joined_seq: 12,
            },
        ]
    }

    fn code(result: Result<Vec<MemberUpdate>, AppError>) -> ErrorCode {
        result.expect_err("refused").code()
    }

    #[test]
    fn the_creator_owns_a_new_group_and_each_invitee_joins_once() {
        let updates = plan(
            &Change::Create {
                members: vec![5, 6, 5, OWNER],
            },
            OWNER,
            &[],
            true,
            10,
        )
        .expect("created");
        assert_eq!(
            updates,
            [
                MemberUpdate::Join {
                    user: OWNER,
                    role: Role::Owner
                },
                MemberUpdate::Join {
                    user: 5,
                    role: Role::Member
                },
                MemberUpdate::Join {
                    user: 6,
                    role: Role::Member
                },
            ]
        );
        let too_many = Change::Create {
            members: vec![5, 6, 7],
        };
        assert_eq!(
            code(plan(&too_many, OWNER, &[], true, 3)),
            ErrorCode::GroupFull
        );
    }

    #[test]
    fn outsiders_learn_nothing_and_members_without_the_role_are_forbidden() {
        for change in [
            Change::Add { users: vec![7] },
            Change::Leave,
            Change::Rename { title: "x".into() },
        ] {
            assert_eq!(
                code(plan(&change, OUTSIDER, &group(), true, 10)),
                ErrorCode::ConversationNotFound
            );
        }
        assert_eq!(
            code(plan(
                &Change::Add { users: vec![7] },
                MEMBER,
                &group(),
                true,
                10
            )),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(plan(
                &Change::Rename { title: "x".into() },
                MEMBER,
                &group(),
                true,
                10
            )),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(plan(
                &Change::SetRole {
                    user: MEMBER,
                    role: Role::Admin
                },
                ADMIN,
                &group(),
                true,
                10
            )),
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn adding_skips_members_and_respects_the_limit() {
        let updates = plan(
            &Change::Add {
                users: vec![MEMBER, 7, 7],
            },
            ADMIN,
            &group(),
            true,
            4,
        )
        .expect("added");
        assert_eq!(
            updates,
            [MemberUpdate::Join {
                user: 7,
                role: Role::Member
            }]
        );
        assert_eq!(
            code(plan(
                &Change::Add { users: vec![7, 8] },
                ADMIN,
                &group(),
                true,
                4
            )),
            ErrorCode::GroupFull
        );
    }

    #[test]
    fn admins_remove_members_and_only_the_owner_removes_admins() {
        assert_eq!(
            plan(&Change::Remove { user: MEMBER }, ADMIN, &group(), true, 10).expect("removed"),
            [MemberUpdate::Leave { user: MEMBER }]
        );
        assert_eq!(
            code(plan(
                &Change::Remove { user: OWNER },
                ADMIN,
                &group(),
                true,
                10
            )),
            ErrorCode::Forbidden
        );
        assert_eq!(
            plan(&Change::Remove { user: ADMIN }, OWNER, &group(), true, 10).expect("removed"),
            [MemberUpdate::Leave { user: ADMIN }]
        );
        assert_eq!(
            code(plan(
                &Change::Remove { user: OUTSIDER },
                OWNER,
                &group(),
                true,
                10
            )),
            ErrorCode::MemberNotFound
        );
    }

    #[test]
    fn an_owner_who_leaves_hands_the_group_to_the_oldest_admin_else_the_oldest_member() {
        assert_eq!(
            plan(&Change::Leave, OWNER, &group(), true, 10).expect("left"),
            [
                MemberUpdate::Leave { user: OWNER },
                MemberUpdate::SetRole {
                    user: ADMIN,
                    role: Role::Owner
                }
            ]
        );
        let without_admin: Vec<Member> = group()
            .into_iter()
            .filter(|m| m.user_id != ADMIN)
            .chain([Member {
                user_id: 4,
                role: Role::Member,
                joined_seq: 20,
            }])
            .collect();
        assert_eq!(
            plan(&Change::Leave, OWNER, &without_admin, true, 10).expect("left"),
            [
                MemberUpdate::Leave { user: OWNER },
                MemberUpdate::SetRole {
                    user: MEMBER,
                    role: Role::Owner
                }
            ]
        );
        assert_eq!(
            plan(&Change::Leave, MEMBER, &group(), true, 10).expect("left"),
            [MemberUpdate::Leave { user: MEMBER }]
        );
    }

    #[test]
    fn making_someone_owner_hands_over_the_group() {
        assert_eq!(
            plan(
                &Change::SetRole {
                    user: MEMBER,
                    role: Role::Owner
                },
                OWNER,
                &group(),
                true,
                10
            )
            .expect("handed over"),
            [
                MemberUpdate::SetRole {
                    user: MEMBER,
                    role: Role::Owner
                },
                MemberUpdate::SetRole {
                    user: OWNER,
                    role: Role::Admin
                }
            ]
        );
    }

    #[test]
    fn a_direct_conversation_keeps_its_two_members() {
        let pair = [
            Member {
                user_id: 1,
                role: Role::Member,
                joined_seq: 0,
            },
            Member {
                user_id: 2,
                role: Role::Member,
                joined_seq: 0,
            },
        ];
        assert_eq!(
            code(plan(&Change::Leave, 1, &pair, false, 10)),
            ErrorCode::NotAGroup
        );
    }
}
